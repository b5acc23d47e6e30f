using System.Text.Json;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// The tokenizer.model (SentencePiece protobuf) path. No real LLaMA tokenizer.model is obtainable offline, so the test
/// writes one from the real LLaMA-2 vocabulary: each piece's score is minus the rank of the first merge that makes it,
/// which is how sentencepiece orders BPE merges. Both readers must then agree with llama-tokenizer-js.
/// </summary>
public sealed class SentencePieceModelTests
{
    private static readonly Lazy<byte[]> LlamaModel = new(() => WriteModel(TestData.Path("llama2/tokenizer.json")));

    [Fact]
    public void A_model_proto_of_the_llama2_vocabulary_encodes_like_the_reference()
    {
        var tok = SentencePieceBpeTokenizer.FromSentencePieceModel(LlamaModel.Value, "llama2.model");
        Assert.Equal([1, 15043, 3186], tok.Encode("Hello world", addBos: true));
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestData.Path("llama2/reference-encodings.json")));
        foreach (var test in doc.RootElement.EnumerateArray())
        {
            string text = test.GetProperty("text").GetString()!;
            int[] expected = test.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.True(expected.SequenceEqual(tok.Encode(text, addBos: true)),
                $"encoding of {JsonSerializer.Serialize(text)} differs");
            Assert.Equal(text.Replace('\u2581', ' '), tok.Decode(expected));
        }
    }

    [Fact]
    public void Truncated_or_damaged_models_fail_with_a_tokenizer_error()
    {
        byte[] model = LlamaModel.Value;
        var rng = new Random(17);
        for (int i = 0; i < 300; i++)
        {
            byte[] bad = i % 2 == 0 ? model[..rng.Next(model.Length)] : (byte[])model.Clone();
            if (i % 2 == 1) for (int k = 0; k < 4; k++) bad[rng.Next(bad.Length)] = (byte)rng.Next(256);
            try { SentencePieceBpeTokenizer.FromSentencePieceModel(bad, "bad.model"); }
            catch (TokenizerException e) { Assert.StartsWith("bad.model: tokenizer: ", e.Message); }
        }
        var unigram = WriteModel(TestData.Path("llama2/tokenizer.json"), modelType: 1);
        Assert.Contains("model type 1 is not supported",
            Assert.Throws<TokenizerException>(()
            => SentencePieceBpeTokenizer.FromSentencePieceModel(unigram, "u.model")).Message);
    }

    // Each piece's score is minus the rank of the first merge that makes it.
    private static byte[] WriteModel(string tokenizerJson, int modelType = 2)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(tokenizerJson));
        var model = doc.RootElement.GetProperty("model");
        var pieces = model.GetProperty("vocab").EnumerateObject().OrderBy(p => p.Value.GetInt32()).Select(p
            => p.Name).ToArray();
        var firstMerge = new Dictionary<string, int>();
        int rank = 0;
        foreach (var m in model.GetProperty("merges").EnumerateArray())
            firstMerge.TryAdd(m.GetString()!.Replace(" ", ""), rank++);
        return SentencePieceModelWriter.Write(pieces.Select((p, id)
            => new SentencePiece(p, firstMerge.TryGetValue(p, out int r) ? -r : 0,
            id == 0 ? PieceType.Unknown : id <= 2 ? PieceType.Control : p.StartsWith("<0x", StringComparison.Ordinal)
                && p.Length == 6 ? PieceType.Byte : PieceType.Normal)), modelType);
    }
}
