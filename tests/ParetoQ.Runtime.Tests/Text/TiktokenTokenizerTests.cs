using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Tests;

/// <summary>Llama-4-style tiktoken over the real o200k vocabulary shipped in
/// Microsoft.ML.Tokenizers.Data.O200kBase.</summary>
public sealed class TiktokenTokenizerTests
{
    private static readonly Dictionary<string, int> Specials = new()
    {
        ["<|begin_of_text|>"] = 200000, ["<|end_of_text|>"] = 200001, ["<|header_start|>"] = 200005,
        ["<|header_end|>"] = 200006, ["<|eom|>"] = 200007, ["<|eot|>"] = 200008,
    };

    // The data package stores "Capacity: N" and then one base64 token per line in rank order; rewrite it as a standard
    // tiktoken ranks file ("base64 rank" per line), the format Llama-4 ships.
    private static readonly Lazy<byte[]> O200kRanks = new(() =>
    {
        var assembly = Assembly.Load("Microsoft.ML.Tokenizers.Data.O200kBase");
        string name = assembly.GetManifestResourceNames().Single(n
            => n.EndsWith(".tiktoken.deflate", StringComparison.Ordinal));
        using var deflate = new DeflateStream(assembly.GetManifestResourceStream(name)!, CompressionMode.Decompress);
        using var reader = new StreamReader(deflate, Encoding.ASCII);
        Assert.StartsWith("Capacity: ", reader.ReadLine());
        var sb = new StringBuilder();
        int rank = 0;
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
            if (line.Length > 0) sb.Append(line).Append(' ').Append(rank++).Append('\n');
        return Encoding.ASCII.GetBytes(sb.ToString());
    });

    private static readonly Lazy<TiktokenTextTokenizer> Llama4Like = new(()
        => new TiktokenTextTokenizer(O200kRanks.Value, Specials, 200000, 202048, "o200k"));

    private static IEnumerable<string> Corpus()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestData.Path("llama2/reference-encodings.json")));
        return doc.RootElement.EnumerateArray().Select(e => e.GetProperty("text").GetString()!).ToArray();
    }

    [Fact]
    public void Our_pre_tokenizer_and_ranks_reproduce_the_libraries_o200k_encoding()
    {
        var reference = TiktokenTokenizer.CreateForModel("gpt-4o");
        Assert.Equal([13225, 2375], Llama4Like.Value.Encode("Hello world", addBos: false));
        foreach (string text in Corpus())
            Assert.Equal(reference.EncodeToIds(text), Llama4Like.Value.Encode(text, addBos: false));
    }

    [Fact]
    public void Round_trips_and_specials_in_user_text_stay_text()
    {
        var tok = Llama4Like.Value;
        foreach (string text in Corpus()) Assert.Equal(text, tok.Decode(tok.Encode(text, addBos: true)));
        int[] ids = tok.Encode("say <|eot|> please", addBos: true);
        Assert.Equal(200000, ids[0]);
        Assert.DoesNotContain(200008, ids);
        Assert.Equal(202048, tok.VocabSize);
        Assert.Equal("", tok.Decode([200008, 201000]));
    }

    [Fact]
    public void Streaming_decode_holds_back_split_characters()
    {
        var tok = Llama4Like.Value;
        const string text = "日本語🙂 and ñ";
        var decoder = new StreamingDecoder(tok);
        var parts = tok.Encode(text, addBos: false).Select(decoder.Push).ToList();
        parts.Add(decoder.Flush());
        Assert.All(parts, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.Equal(text, string.Concat(parts));
    }

    public static TheoryData<string, string> BadRanks() => new()
    {
        { "!!notbase64 0\n", "ranks line 1 is not 'base64 rank'" },
        { "QQ== 5\n", "ranks line 1 has rank '5', expected 0" },
        { "QQ== 0\n", "fewer than the 256 single bytes" },
    };

    [Theory]
    [MemberData(nameof(BadRanks))]
    public void Bad_ranks_files_fail_clearly(string ranks, string expected)
    {
        var e = Assert.Throws<TokenizerException>(()
            => new TiktokenTextTokenizer(Encoding.ASCII.GetBytes(ranks), Specials, 200000, 202048, "bad.tiktoken"));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_special_token_inside_the_ranks_is_refused()
    {
        var e = Assert.Throws<TokenizerException>(()
            => new TiktokenTextTokenizer(O200kRanks.Value, new Dictionary<string, int> { ["<|x|>"] = 5 }, -1, 202048,
            "o200k"));
        Assert.Contains("special token '<|x|>' has id 5", e.Message);
    }

    [Fact]
    public void The_tokenizer_comes_from_inside_the_pq_file()
    {
        using var dir = new TempDir();
        var gen = ParetoQ.TestModels.TestModelGenerator.Write(dir.File("m.pq"),
            ParetoQ.TestModels.TestModelGenerator.MobileLlmPro(), ParetoQ.Runtime.Quantization.WeightFormat.Q2Seq,
            ParetoQ.Runtime.Quantization.WeightFormat.F32, seed: 1);
        using var file = ParetoQ.Runtime.Format.PqFile.Open(gen.Path);
        var tok = Tokenizers.FromFile(file, gen.Config.VocabSize);
        Assert.Equal([256, 72, 105], tok.Encode("Hi", addBos: true)); // byte-level ranks: ids are the bytes
        Assert.Equal("Hi", tok.Decode([256, 72, 105]));
        var e = Assert.Throws<TokenizerException>(() => Tokenizers.FromFile(file, 200));
        Assert.Contains("is outside the model's vocabulary (200)", e.Message);
    }

    [Fact]
    public void Llama4_chat_template_wraps_messages_in_header_and_eot_tokens()
    {
        var tok = Llama4Like.Value;
        int[] Enc(string s) => tok.Encode(s, addBos: false);
        int[] ids = ChatTemplate.Llama4(tok, [new("system", "Be brief."), new("user", "Hi <|eot|>")]);
        int[] expected =
        [
            200000,
            200005, .. Enc("system"), 200006, .. Enc("\n\n"), .. Enc("Be brief."), 200008,
            200005, .. Enc("user"), 200006, .. Enc("\n\n"), .. Enc("Hi <|eot|>"), 200008,
            200005, .. Enc("assistant"), 200006, .. Enc("\n\n"),
        ];
        Assert.Equal(expected, ids);
        Assert.Equal(2, ids.Count(id => id == 200008)); // the user's literal "<|eot|>" stayed text
        Assert.Throws<ArgumentException>(() => ChatTemplate.Llama4(tok, [new("robot", "x")]));
    }
}
