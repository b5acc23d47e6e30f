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

    // A template over the o200k tokenizer with the special tokens a family defines (ids past the vocabulary).
    private static ChatTemplate Template(string? jinja, Dictionary<string, int> specials, int bos = -1, int eos = -1) =>
        ChatTemplate.For(Llama4Like.Value, new ParetoQ.Runtime.Format.PqTokenizerInfo("tiktoken", bos,
            eos >= 0 ? [eos] : [], -1, specials, jinja));

    private static int[] Enc(string s) => Llama4Like.Value.Encode(s, addBos: false);

    [Fact]
    public void Llama4_chat_template_wraps_messages_in_header_and_eot_tokens()
    {
        var template = Template(null, Specials);
        Assert.Equal(ChatFormat.Llama4, template.Format);
        int[] ids = template.Encode([new("system", "Be brief."), new("user", "Hi <|eot|>")]);
        int[] expected =
        [
            200000,
            200005, .. Enc("system"), 200006, .. Enc("\n\n"), .. Enc("Be brief."), 200008,
            200005, .. Enc("user"), 200006, .. Enc("\n\n"), .. Enc("Hi <|eot|>"), 200008,
            200005, .. Enc("assistant"), 200006, .. Enc("\n\n"),
        ];
        Assert.Equal(expected, ids);
        Assert.Equal(2, ids.Count(id => id == 200008)); // the user's literal "<|eot|>" stayed text
        Assert.Equal([200008], template.EndOfTurnIds);
        // A continuation after the closed reply: no BOS.
        Assert.Equal([200005, .. Enc("user"), 200006, .. Enc("\n\n"), .. Enc("Bye"), 200008,
            200005, .. Enc("assistant"), 200006, .. Enc("\n\n")], template.Encode([new("user", "Bye")], true));
        Assert.Throws<ArgumentException>(() => template.Encode([new("robot", "x")]));
    }

    // Excerpts of the chat_template fields that real checkpoints ship, with the markers each family writes.
    public static TheoryData<string, string[], bool, ChatFormat> TemplateFamilies() => new()
    {
        { "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] + " +
            "'\\n<</SYS>>\\n\\n' %}{% endif %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}", [], true,
            ChatFormat.Llama2 },
        { "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + " +
            "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + " +
            "eos_token}}{% endif %}{% endfor %}", [], true, ChatFormat.Mistral },
        { "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + " +
            "message['content'] | trim + '<|eot_id|>' %}",
            ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], true, ChatFormat.Llama3 },
        { "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + " +
            "'<|im_end|>' + '\\n'}}{% endfor %}", ["<|im_start|>", "<|im_end|>"], false, ChatFormat.ChatML },
        { "{{- '<|header_start|>' + message['role'] + '<|header_end|>\\n\\n' }}",
            ["<|begin_of_text|>", "<|header_start|>", "<|header_end|>", "<|eot|>"], true, ChatFormat.Llama4 },
        // A template naming a token the tokenizer lacks cannot be written: the plain template instead.
        { "{{'<|im_start|>' + message['role'] }}", [], false, ChatFormat.Plain },
    };

    [Theory]
    [MemberData(nameof(TemplateFamilies))]
    public void The_family_is_detected_from_the_stored_template(string jinja, string[] specials, bool hasBos,
        ChatFormat expected)
    {
        var ids = specials.Select((name, i) => (name, i)).ToDictionary(x => x.name, x => 200100 + x.i);
        Assert.Equal(expected, ChatTemplate.Detect(jinja, ids, hasBos));
    }

    [Fact]
    public void Header_chatml_and_inst_families_lay_out_messages_as_their_templates_do()
    {
        var llama3 = Template(null, new() { ["<|begin_of_text|>"] = 200100, ["<|start_header_id|>"] = 200101,
            ["<|end_header_id|>"] = 200102, ["<|eot_id|>"] = 200103 });
        Assert.Equal(ChatFormat.Llama3, llama3.Format);
        Assert.Equal([200100, 200101, .. Enc("user"), 200102, .. Enc("\n\n"), .. Enc("Hi"), 200103,
            200101, .. Enc("assistant"), 200102, .. Enc("\n\n")], llama3.Encode([new("user", "Hi")]));
        Assert.Equal([200103], llama3.EndOfTurnIds);

        var chatml = Template(null, new() { ["<|im_start|>"] = 200200, ["<|im_end|>"] = 200201 });
        Assert.Equal(ChatFormat.ChatML, chatml.Format);
        Assert.Equal([200200, .. Enc("system\nBe brief."), 200201, .. Enc("\n"),
            200200, .. Enc("user\nHi"), 200201, .. Enc("\n"), 200200, .. Enc("assistant\n")],
            chatml.Encode([new("system", "Be brief."), new("user", "Hi")]));
        Assert.Equal([200201, .. Enc("\n")], chatml.CloseReply!);

        const string Llama2Jinja = "{{ bos_token + '[INST] ' + content + ' [/INST]' }} <<SYS>>";
        var llama2 = Template(Llama2Jinja, [], bos: 1, eos: 2);
        Assert.Equal(ChatFormat.Llama2, llama2.Format);
        Assert.Equal([1, .. Enc("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"), .. Enc(" Hello "), 2,
            1, .. Enc("[INST] Bye [/INST]")],
            llama2.Encode([new("system", "Be brief."), new("user", "Hi"), new("assistant", "Hello"),
                new("user", "Bye")]));

        var mistral = Template("{{ bos_token }}{{ '[INST] ' + message['content'] + ' [/INST]' }}", [], bos: 1, eos: 2);
        Assert.Equal(ChatFormat.Mistral, mistral.Format);
        Assert.Equal([1, .. Enc("[INST] Be brief.\n\nHi [/INST]"), .. Enc("Hello"), 2, .. Enc("[INST] Bye [/INST]")],
            mistral.Encode([new("system", "Be brief."), new("user", "Hi"), new("assistant", "Hello"),
                new("user", "Bye")]));
        Assert.Equal([2], mistral.CloseReply!);
        Assert.Equal(Enc("[INST] Next [/INST]"), mistral.Encode([new("user", "Next")], continuation: true));

        var plain = Template(null, [], bos: 1, eos: 2);
        Assert.Equal(ChatFormat.Plain, plain.Format);
        Assert.Equal([1, .. Enc("User: Hi\nAssistant:")], plain.Encode([new("user", "Hi")]));
        Assert.Null(plain.CloseReply);
        Assert.Equal(["\nUser:", "\nSystem:"], plain.StopStrings);
    }
}
