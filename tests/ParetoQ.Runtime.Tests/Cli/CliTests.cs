using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

/// <summary>Spawns the built paretoq-run and checks its output and exit codes, as a user would see them.</summary>
public sealed class CliTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly string _model;

    public CliTests()
    {
        _model = _dir.File("m.pq");
        TestModelGenerator.Write(_model, TestModelGenerator.MobileLlmPro(), WeightFormat.Q2Seq, WeightFormat.F32,
            seed: 3);
    }

    public void Dispose() => _dir.Dispose();

    private static (int Exit, string Out, string Err) Run(params string[] args) => RunWithInput("", args);

    private static (int Exit, string Out, string Err) RunWithInput(string stdin, params string[] args)
        => RunWithEnvironment(stdin, [], args);

    private static (int Exit, string Out, string Err) RunWithEnvironment(string stdin,
        (string Name, string Value)[] environment, params string[] args) =>
        ProgramRunner.Run("paretoq-run", stdin, environment, args);

    [Fact]
    public void Generates_reproducibly_and_prints_one_statistics_line()
    {
        var a = Run("--model", _model, "--prompt", "Hello", "--max-tokens", "12", "--seed", "9", "--temperature", "30",
            "--top-k", "0", "--min-p", "0");
        var b = Run("--model", _model, "--prompt", "Hello", "--max-tokens", "12", "--seed", "9", "--temperature", "30",
            "--top-k", "0", "--min-p", "0");
        Assert.Equal(0, a.Exit);
        Assert.Equal(a.Out, b.Out);
        string stats = Assert.Single(a.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        // The tests run the JIT build: its first statistics line says that it includes compiling the code.
        Assert.Matches(@"^prompt 6 tokens, prefill [\d.]+ tok/s \| generated \d+ tokens, decode [\d.]+ tok/s \| " +
            @"peak memory \d+ MiB \| stop: (MaxTokens|EndOfSequence) \(JIT build: this first call includes compiling",
            stats);
    }

    [Fact]
    public void Thread_counts_and_kernel_paths_give_the_same_greedy_text_and_bad_settings_are_named()
    {
        var one = Run("--model", _model, "--prompt", "Hello", "--max-tokens", "10", "--temperature", "0", "--threads",
            "1");
        var two = Run("--model", _model, "--prompt", "Hello", "--max-tokens", "10", "--temperature", "0", "--threads",
            "2");
        Assert.Equal(0, one.Exit);
        // Each output row is computed whole by one thread with the same code, so the split cannot change a bit.
        Assert.Equal(one.Out, two.Out);
        if (KernelDispatch.IsSupported(KernelPath.Avx2))
        {
            // Every integer path computes the same sums, so the text does not depend on the path either.
            var avx2 = RunWithEnvironment("", [("PARETOQ_KERNELS", "avx2")], "--model", _model, "--prompt", "Hello",
                "--max-tokens", "10", "--temperature", "0");
            Assert.Equal(one.Out, avx2.Out);
        }
        var badThreads = Run("--model", _model, "--prompt", "Hello", "--threads", "-3");
        Assert.Equal(2, badThreads.Exit);
        Assert.Contains("--threads -3", badThreads.Err);
        var badPath = RunWithEnvironment("", [("PARETOQ_KERNELS", "sse9")], "--model", _model, "--prompt", "Hello");
        Assert.Equal(1, badPath.Exit);
        Assert.Contains("unknown kernel path 'sse9'", badPath.Err);
        Assert.Single(badPath.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Theory]
    [InlineData("paretoq-run", new[] { "--kv-cache", "int4", "--prompt", "Hi" }, "'int4'")]
    [InlineData("paretoq-bench", new[] { "kernels", "--bogus" }, "'--bogus'")]
    [InlineData("paretoq-convert", new[] { "inspect" }, "MODEL")]
    [InlineData("paretoq-train", new[] { "frobnicate" }, "'frobnicate'")]
    public void Every_program_reports_a_usage_error_on_one_line_with_exit_code_2(string program, string[] args,
        string named)
    {
        var r = ProgramRunner.Run(program, "", [], args);
        Assert.Equal(2, r.Exit);
        string line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith(program + ": ", line);
        Assert.EndsWith("(see --help)", line);
        Assert.Contains(named, line);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void An_ILGPU_device_gives_the_exact_modes_greedy_text()
    {
        var exact = Run("--model", _model, "--prompt", "Hello", "--max-tokens", "10", "--temperature", "0", "--exact");
        var device = Run("--model", _model, "--prompt", "Hello", "--max-tokens", "10", "--temperature", "0", "--device",
            "ilgpu-cpu");
        Assert.Equal(0, device.Exit);
        Assert.Equal(exact.Out, device.Out);
    }

    [Fact]
    public void Greedy_output_is_the_engines_greedy_text()
    {
        var cli = Run("--model", _model, "--prompt", "Hello", "--max-tokens", "10", "--temperature", "0");
        using var model = LanguageModel.Load(_model);
        var tokenizer = Tokenizers.FromFile(model.File, model.Config.VocabSize);
        using var session = new Session(model);
        var expected = new Generator(session, tokenizer).Generate(tokenizer.Encode("Hello", addBos: true),
            new GenerationOptions { MaxTokens = 10, Sampler = new SamplerOptions { Temperature = 0 },
                EosIds = model.File.Tokenizer.EosIds });
        // The prompt is echoed first, as llama-cli does.
        Assert.Equal("Hello" + expected.Text + Environment.NewLine, cli.Out);
        var bare = Run("--model", _model, "--prompt", "Hello", "--max-tokens", "10", "--temperature", "0", "--no-echo");
        Assert.Equal(expected.Text + Environment.NewLine, bare.Out);
    }

    [Fact]
    public void The_prompt_comes_from_a_file_or_stdin_and_json_carries_the_text_and_statistics()
    {
        string[] greedy = ["--model", _model, "--max-tokens", "12", "--temperature", "0", "--no-echo"];
        var fromArgument = Run([.. greedy, "--prompt", "Hello there"]);
        File.WriteAllText(_dir.File("prompt.txt"), "Hello there\n");
        var fromFile = Run([.. greedy, "-f", _dir.File("prompt.txt")]);
        var fromStdin = RunWithInput("Hello there\n", [.. greedy, "-f", "-"]);
        Assert.Equal(0, fromFile.Exit);
        Assert.Equal(fromArgument.Out, fromFile.Out);
        Assert.Equal(fromArgument.Out, fromStdin.Out);

        var json = Run([.. greedy[..^1], "--prompt", "Hello there", "--json"]);
        Assert.Equal(0, json.Exit);
        Assert.Equal("", json.Err);
        using var doc = System.Text.Json.JsonDocument.Parse(json.Out);
        var root = doc.RootElement;
        Assert.Equal("Hello there", root.GetProperty("prompt").GetString());
        Assert.Equal(fromArgument.Out.TrimEnd('\n', '\r'), root.GetProperty("text").GetString());
        Assert.Equal(12, root.GetProperty("generated_tokens").GetInt32());
        Assert.True(root.GetProperty("decode_tokens_per_second").GetDouble() > 0);
        Assert.Equal("MaxTokens", root.GetProperty("stop").GetString());
    }

    [Fact]
    public void Stop_strings_and_unlimited_generation_end_where_they_should()
    {
        string[] greedy = ["--model", _model, "--prompt", "Hello", "--temperature", "0", "--no-echo", "--json"];
        using var free = System.Text.Json.JsonDocument.Parse(Run([.. greedy, "--max-tokens", "40"]).Out);
        string text = free.RootElement.GetProperty("text").GetString()!;
        string stop = text.Substring(text.Length / 2, 2);
        using var stopped =
            System.Text.Json.JsonDocument.Parse(Run([.. greedy, "--max-tokens", "40", "--stop", stop]).Out);
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)],
            stopped.RootElement.GetProperty("text").GetString());
        Assert.Equal("StopString", stopped.RootElement.GetProperty("stop").GetString());

        // -n -1: until EOS or a full context.
        using var unlimited = System.Text.Json.JsonDocument.Parse(Run([.. greedy, "-n", "-1", "--context", "48"]).Out);
        var reason = unlimited.RootElement.GetProperty("stop").GetString();
        Assert.True(reason is "ContextFull" or "EndOfSequence", reason);
        // A full context of 48 still yields one more token, sampled from the last position's logits.
        if (reason == "ContextFull")
            Assert.Equal(49, unlimited.RootElement.GetProperty("prompt_tokens").GetInt32()
                + unlimited.RootElement.GetProperty("generated_tokens").GetInt32());
    }

    [Fact]
    public void Convert_inspect_json_describes_the_file_as_the_reader_sees_it()
    {
        var r = ProgramRunner.Run("paretoq-convert", "", [], ["inspect", _model, "--json"]);
        Assert.Equal(0, r.Exit);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Out);
        using var file = ParetoQ.Runtime.Format.PqFile.Open(_model, verifyChecksums: false);
        var root = doc.RootElement;
        Assert.Equal(file.FileLength, root.GetProperty("bytes").GetInt64());
        Assert.True(System.Text.Json.JsonElement.DeepEquals(file.Config, root.GetProperty("config")));
        Assert.Equal(file.Tokenizer.EosIds, root.GetProperty("tokenizer").GetProperty("eos_ids").EnumerateArray()
            .Select(e => e.GetInt32()));
        var tensors = root.GetProperty("tensors").EnumerateArray().ToList();
        Assert.Equal(file.Tensors.Select(t => t.Name), tensors.Select(t => t.GetProperty("name").GetString()));
        Assert.Equal(file.Tensors.Sum(t => t.Length), tensors.Sum(t => t.GetProperty("bytes").GetInt64()));
    }

    [Fact]
    public void A_base_model_chats_through_the_plain_template_with_a_note()
    {
        string v1 = _dir.File("base.pq");
        TestModelGenerator.Write(v1, TestModelGenerator.MobileLlm(), WeightFormat.Q2Seq, WeightFormat.F32, seed: 1);
        var talk = RunWithInput("Hi\nHow are you?\n/exit\n", "--model", v1, "--chat", "--max-tokens", "6",
            "--temperature", "0");
        Assert.Equal(0, talk.Exit);
        Assert.Contains("has no chat template, so the plain one is used", talk.Err);
        var prompts = System.Text.RegularExpressions.Regex.Matches(talk.Err, @"prompt (\d+) tokens")
            .Select(m => int.Parse(m.Groups[1].Value)).ToArray();
        Assert.Equal(2, prompts.Length);
        // Each turn reads the whole conversation again: the second prompt holds the first turn too.
        Assert.True(prompts[1] > prompts[0], $"{prompts[0]} then {prompts[1]}");
    }

    [Fact]
    public void Perplexity_matches_the_mean_negative_log_likelihood_from_the_engine()
    {
        string text = "The quick brown fox jumps over the lazy dog. A second sentence follows it.";
        string file = _dir.File("text.txt");
        File.WriteAllText(file, text);
        var cli = Run("--model", _model, "--perplexity", file, "--context", "256", "--kv-cache", "f32");
        Assert.Equal(0, cli.Exit);

        using var model = LanguageModel.Load(_model);
        var tokenizer = Tokenizers.FromFile(model.File, model.Config.VocabSize);
        int[] tokens = tokenizer.Encode(text, addBos: true);
        using var session = new Session(model,
            new SessionOptions { AllLogits = true, ContextLength = 256, KvCache = KvCacheType.F32 });
        int vocab = model.Config.VocabSize;
        var logits = new float[tokens.Length * vocab];
        session.Forward(tokens, logits);
        double nll = 0;
        for (int t = 0; t + 1 < tokens.Length; t++)
        {
            var row = logits.AsSpan(t * vocab, vocab);
            double max = row.ToArray().Max(), sum = row.ToArray().Sum(l => Math.Exp(l - max));
            nll += Math.Log(sum) - (row[tokens[t + 1]] - max);
        }
        double expected = Math.Exp(nll / (tokens.Length - 1));
        var m = System.Text.RegularExpressions.Regex.Match(cli.Out,
            @"^perplexity ([\d.]+) ± [\d.]+ over (\d+) tokens");
        Assert.True(m.Success, cli.Out);
        Assert.Equal(tokens.Length - 1, int.Parse(m.Groups[2].Value));
        Assert.Equal(expected, double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture),
            expected * 1e-3);
    }

    [Fact]
    public void Chunked_perplexity_follows_llama_perplexity_protocol()
    {
        // llama-perplexity -c N: chunks of N tokens, the first replaced by BOS, logits N/2 … N−2 scored; a partial
        // chunk is dropped.
        string text = string.Join(" ", File.ReadLines(TestData.Path("brown/text.txt")).Take(3));
        string file = _dir.File("brown3.txt");
        File.WriteAllText(file, text);
        var cli = Run("--model", _model, "--perplexity", file, "--perplexity-mode", "chunks", "--context", "64",
            "--kv-cache", "f32");
        Assert.True(cli.Exit == 0, cli.Err);

        using var model = LanguageModel.Load(_model);
        var tokenizer = Tokenizers.FromFile(model.File, model.Config.VocabSize);
        int[] tokens = tokenizer.Encode(text, addBos: true);
        using var session = new Session(model,
            new SessionOptions { AllLogits = true, ContextLength = 64, KvCache = KvCacheType.F32 });
        int vocab = model.Config.VocabSize, chunks = tokens.Length / 64;
        Assert.True(chunks >= 3);
        var logits = new float[64 * vocab];
        var nlls = new List<double>();
        for (int c = 0; c < chunks; c++)
        {
            int[] chunk = tokens[(c * 64)..((c + 1) * 64)];
            chunk[0] = tokenizer.BosId;
            session.Reset();
            session.Forward(chunk, logits);
            for (int t = 32; t <= 62; t++)
            {
                var row = logits.AsSpan(t * vocab, vocab).ToArray();
                double max = row.Max();
                nlls.Add(Math.Log(row.Sum(l => Math.Exp(l - max))) - (row[chunk[t + 1]] - max));
            }
        }
        double expected = Math.Exp(nlls.Average());
        // llama-perplexity's uncertainty: PPL · sqrt((mean(nll²) − mean(nll)²) / (n − 1)).
        double meanSquare = nlls.Average(v => v * v), mean = nlls.Average();
        double expectedSpread = expected * Math.Sqrt((meanSquare - mean * mean) / (nlls.Count - 1));
        var m = System.Text.RegularExpressions.Regex.Match(cli.Out,
            @"^perplexity ([\d.]+) ± ([\d.]+) over (\d+) tokens .*\((\d+) chunks of 64");
        Assert.True(m.Success, cli.Out);
        Assert.Equal(chunks * 31, int.Parse(m.Groups[3].Value));
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        Assert.Equal(expected, double.Parse(m.Groups[1].Value, invariant), expected * 1e-3);
        Assert.Equal(expectedSpread, double.Parse(m.Groups[2].Value, invariant), expectedSpread * 1e-2 + 1e-4);
        // Progress as llama-perplexity prints it: the running perplexity after each chunk, the last one the result.
        var progress = System.Text.RegularExpressions.Regex.Matches(cli.Err, @"\[(\d+)\]([\d.]+),");
        Assert.Equal(chunks, progress.Count);
        Assert.Equal(double.Parse(m.Groups[1].Value, invariant),
            double.Parse(progress[^1].Groups[2].Value, invariant), 1e-3);

        var json = Run("--model", _model, "--perplexity", file, "--perplexity-mode", "chunks", "--context", "64",
            "--kv-cache", "f32", "--json");
        Assert.True(json.Exit == 0, json.Err);
        using var doc = System.Text.Json.JsonDocument.Parse(json.Out);
        Assert.Equal(expected, doc.RootElement.GetProperty("perplexity").GetDouble(), expected * 1e-3);
        Assert.Equal(expectedSpread, doc.RootElement.GetProperty("uncertainty").GetDouble(), expectedSpread * 1e-2);
        Assert.Equal(chunks * 31, doc.RootElement.GetProperty("tokens").GetInt32());
        Assert.Equal(chunks, doc.RootElement.GetProperty("running_by_chunk").GetArrayLength());

        var shortText = Run("--model", _model, "--perplexity", file, "--perplexity-mode", "chunks", "--context", "512");
        Assert.Equal(1, shortText.Exit);
        Assert.Contains("needs at least 1024", shortText.Err);
    }

    [Fact]
    public void Chat_answers_a_prompt_and_holds_an_interactive_conversation()
    {
        var once = Run("--model", _model, "--chat", "--system", "Be brief.", "--prompt", "Hi", "--max-tokens", "6",
            "--temperature", "0");
        Assert.Equal(0, once.Exit);
        Assert.Matches(@"^prompt \d+ tokens", once.Err);

        var talk = RunWithInput("Hi\nHow are you?\n/exit\n", "--model", _model, "--chat", "--max-tokens", "6",
            "--temperature", "0");
        Assert.Equal(0, talk.Exit);
        var stats = talk.Err.Split('\n').Where(l => l.Contains("tok/s")).ToArray();
        Assert.Equal(2, stats.Length);
        // The second turn continues the same session: its prompt is only the new turn, not the whole template again.
        int first = int.Parse(System.Text.RegularExpressions.Regex.Match(stats[0], @"prompt (\d+)").Groups[1].Value);
        int second = int.Parse(System.Text.RegularExpressions.Regex.Match(stats[1], @"prompt (\d+)").Groups[1].Value);
        // Byte-level tokenizer: one token per ASCII char, one per special.
        // <|begin_of_text|> <|header_start|> user <|header_end|> \n\n Hi <|eot|> <|header_start|> assistant
        // <|header_end|> \n\n
        Assert.Equal(1 + 1 + 4 + 1 + 2 + 2 + 1 + 1 + 9 + 1 + 2, first);
        // <|header_start|> user <|header_end|> \n\n How are you? <|eot|> <|header_start|> assistant <|header_end|> \n\n
        Assert.Equal(1 + 4 + 1 + 2 + 12 + 1 + 1 + 9 + 1 + 2, second);
    }

    [Fact]
    public void A_scripted_chat_runs_past_the_context_dropping_the_oldest_turns()
    {
        string shipped = Path.Combine(TestData.RepoRoot(), "models", "stories260K-2bit.pq");
        string saved = _dir.File("chat.json");
        var turns = Enumerable.Range(1, 10).Select(i => $"Turn {i}: Tom and Lily went to the park to play with a ball.")
            .ToList();
        turns.Insert(2, "/help");
        turns.Insert(4, $"/save {saved}");
        turns.Insert(5, "/regen");
        turns.Insert(6, "/bogus");
        string script = string.Join("\n", turns) + "\n";
        var chat = RunWithInput(script, "--model", shipped, "--chat", "-n", "64", "--temperature", "0");
        Assert.True(chat.Exit == 0, chat.Err);
        // Ten turns and one regenerated answer, each with its statistics line.
        Assert.Equal(11, chat.Err.Split('\n').Count(l => l.Contains("tok/s")));
        Assert.Contains("the oldest 2 messages were dropped", chat.Err);
        Assert.Contains("/regen        answer the last message again", chat.Err);
        Assert.Contains("unknown command /bogus", chat.Err);
        var history = ChatHistory.Load(saved);
        // Saved after three turns.
        Assert.Equal(["user", "assistant", "user", "assistant", "user", "assistant"], history.Select(m => m.Role));
        Assert.StartsWith("Turn 3:", history[4].Content);
    }

    public static TheoryData<string[], int, string> Errors() => new()
    {
        { ["--model", "/nonexistent/m.pq", "--prompt", "x"], 1, "/nonexistent/m.pq: does not exist" },
        { ["--prompt", "x", "--bogus"], 2, "unknown option '--bogus'" },
        { ["--prompt", "x", "--tempreature", "1"], 2, "unknown option '--tempreature' (did you mean --temperature?)" },
        { ["--prompt", "x", "--threads", "two"], 2,
            "Cannot parse argument 'two' for option '--threads' as a whole number" },
        { ["--prompt", "x", "--temp", "hot"], 2, "as a number" },
        { ["--prompt", "x", "--seed", "-5"], 2, "--seed '-5' is not a whole number ≥ 0 (or -1 for a random seed)" },
        { ["--model", "MODEL", "--prompt", "   "], 2, "the prompt is empty" },
        { ["--model", "MODEL"], 2, "give --prompt TEXT, --chat or --perplexity FILE" },
        { ["--model", "MODEL", "--prompt", "a long prompt that does not fit", "--context", "8"], 1,
            "exceeds the context length 8" },
        { ["--model", "MODEL", "--prompt", "x", "--top-p", "0"], 2, "top-p 0 must be in (0, 1]" },
        { ["--model", "MODEL", "--prompt", "x", "--kv-cache", "int4"], 2, "int4" },
        { ["--model", "MODEL", "-f", "BADUTF8"], 1, "is not valid UTF-8 (byte 1)" },
        { ["--model", "MODEL", "-f", "BADUTF8", "--prompt", "x"], 2, "give --prompt or --file, not both" },
        { ["--model", "MODEL", "--prompt", "x", "-n", "-2"], 2, "-1 for no limit" },
        { ["--model", "MODEL", "--chat", "--json"], 2, "--json needs --prompt" },
        { ["--model", "CORRUPT", "--prompt", "x"], 1, "checksum mismatch" },
        { ["--model", "MODEL", "--perplexity", "BADUTF8"], 1, "is not valid UTF-8" },
        { ["--model", "MODEL", "--prompt", "x", "--device", "tpu"], 2, "tpu" },
        { ["--model", "MODEL", "--prompt", "x", "--device", "ilgpu-cpu", "--exact"], 1,
            "--exact is a mode of the CPU backend" },
    };

    [Fact]
    public void Llama_cli_flags_run_as_aliases_of_ours()
    {
        // llama-cli -m … -p hi --temp 0 -n 8 -c 256 -s 1 runs here as written, and gives our spelling's greedy text.
        var llama = Run("-m", _model, "-p", "hi", "--temp", "0", "-n", "8", "-c", "256", "-s", "1", "-ngl", "99",
            "--no-display-prompt");
        Assert.True(llama.Exit == 0, llama.Err);
        Assert.Contains("note: -ngl is ignored", llama.Err);
        var ours = Run("--model", _model, "--prompt", "hi", "--temperature", "0", "--max-tokens", "8", "--context",
            "256", "--seed", "1", "--no-echo");
        Assert.Equal(ours.Out, llama.Out);
        Assert.NotEmpty(ours.Out);
        // --seed -1 is llama.cpp's random seed.
        var random = Run("-m", _model, "-p", "hi", "--seed", "-1", "--ctx-size", "64", "--n-predict", "2");
        Assert.True(random.Exit == 0, random.Err);
        Assert.DoesNotContain(Errors(), e => e[2] is string s && s.Contains("System."));
    }

    [Theory]
    [MemberData(nameof(Errors))]
    public void Errors_are_one_line_with_a_nonzero_exit_and_no_stack_trace(string[] args, int exit, string expected)
    {
        string corrupt = _dir.File("corrupt.pq");
        var bytes = File.ReadAllBytes(_model);
        bytes[^10] ^= 0xFF;
        File.WriteAllBytes(corrupt, bytes);
        File.WriteAllBytes(_dir.File("bad.txt"), [0x41, 0xC3, 0x28, 0x42]);
        var resolved = args.Select(a
            => a switch { "MODEL" => _model, "CORRUPT" => corrupt, "BADUTF8" => _dir.File("bad.txt"), _ => a })
            .ToArray();
        var r = Run(resolved);
        Assert.Equal(exit, r.Exit);
        string line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("paretoq-run: ", line);
        Assert.Contains(expected, line);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("System.", line); // no .NET type names
    }
}
