using System.CommandLine;
using System.Diagnostics;
using ParetoQ.CommandLine;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Cli;

/// <summary>paretoq-run: generate text from a .pq model, chat with it, or measure its perplexity on a text
/// file.</summary>
public static class Program
{
    public const string DefaultModel = "models/stories260K-2bit.pq";

#if PARETOQ_ILGPU
    private static readonly Func<string, IComputeBackend?>? Accelerators = ParetoQ.Accelerators.IlgpuDevices.TryCreate;
#else
    private static readonly Func<string, IComputeBackend?>? Accelerators = null;
#endif

    public static int Main(string[] args)
    {
        var model = new Option<string?>("--model",
            "-m") { Description = $"The .pq model file (default: {DefaultModel} in the current directory or beside the program)" };
        var prompt = new Option<string?>("--prompt",
            "-p") { Description = "The prompt; with --chat, the first user message" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Most tokens to generate",
            DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 is greedy",
            DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens; 0 keeps all",
            DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling threshold; 1 is off",
            DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { Description = "Drop tokens below this fraction of the best one's probability; 0 is off", DefaultValueFactory = _ => 0.05f };
        var repeatPenalty = new Option<float>("--repeat-penalty") { Description = "Penalty on tokens of the last 64; 1 (the default) is off, so --temperature 0 is argmax", DefaultValueFactory = _ => 1f };
        var seed = new Option<ulong?>("--seed") { Description = "Random seed; the same seed gives the same text (default: random)" };
        var context = new Option<int>("--context",
            "-c") { Description = "Context length in tokens (default: min(model maximum, 4096))" };
        var kvCache = new Option<string>("--kv-cache") { Description = "KV cache type", DefaultValueFactory = _
            => "int8" };
        kvCache.AcceptOnlyFromAmong("int8", "f32");
        var chat = new Option<bool>("--chat") { Description = "Use the model's chat template; without --prompt, chat interactively" };
        var system = new Option<string?>("--system") { Description = "System message for --chat" };
        var threads = new Option<int>("--threads",
            "-t") { Description = "Worker threads, 1 up to the cores this process may use (default: one per core)" };
        var exact = new Option<bool>("--exact") { Description = "Exact mode: fp32 activations through the scalar reference kernels (slow; for accuracy checks)" };
        var device = new Option<string>("--device") { Description = "cpu, or through ILGPU (JIT-hosted build only): cuda, opencl, ilgpu-cpu (a simulator, for tests), auto (cuda, then opencl, then cpu)", DefaultValueFactory = _ => "cpu" };
        device.AcceptOnlyFromAmong(ComputeDevice.Names);
        var perplexity = new Option<string?>("--perplexity") { Description = "Print the model's perplexity over this UTF-8 text file instead of generating" };
        var perplexityMode = new Option<string>("--perplexity-mode") { Description = "windows: sliding windows with half-context overlap, every token scored once; chunks: llama-perplexity's protocol (chunks of --context tokens starting with BOS, second halves scored), comparable with llama-perplexity -c N", DefaultValueFactory = _ => "windows" };
        perplexityMode.AcceptOnlyFromAmong("windows", "chunks");

        // Out-of-range values are usage errors, found by the engine's own checks at parse time.
        maxTokens.Check(n => { if (n < 0) throw new ArgumentException($"--max-tokens {n} must be ≥ 0"); });
        temperature.Check(v => new SamplerOptions { Temperature = v }.Validate());
        topK.Check(v => new SamplerOptions { TopK = v }.Validate());
        topP.Check(v => new SamplerOptions { TopP = v }.Validate());
        minP.Check(v => new SamplerOptions { MinP = v }.Validate());
        repeatPenalty.Check(v => new SamplerOptions { RepeatPenalty = v }.Validate());
        threads.Check(v => ThreadCount.Check(v, "--threads"));
        context.Check(v => { if (v < 0) throw new ArgumentException($"--context {v} must be ≥ 0"); });

        var root = new RootCommand("paretoq-run: run a ParetoQ low-bit language model (.pq)")
        {
            model, prompt, maxTokens, temperature, topK, topP, minP, repeatPenalty, seed, context, kvCache, chat,
                system, perplexity, perplexityMode, threads, exact, device,
        };
        root.SetAction(parse => Run(new Settings(
            parse.GetValue(model), parse.GetValue(prompt), parse.GetValue(maxTokens),
            new SamplerOptions
            {
                Temperature = parse.GetValue(temperature), TopK = parse.GetValue(topK), TopP = parse.GetValue(topP),
                    MinP = parse.GetValue(minP),
                RepeatPenalty = parse.GetValue(repeatPenalty), Seed = parse.GetValue(seed)
                    ?? (ulong)Stopwatch.GetTimestamp(),
            },
            parse.GetValue(context), parse.GetValue(kvCache) == "f32" ? KvCacheType.F32 : KvCacheType.Int8,
            parse.GetValue(chat), parse.GetValue(system), parse.GetValue(perplexity),
            parse.GetValue(perplexityMode) == "chunks" ? PerplexityMode.Chunks : PerplexityMode.Windows,
                parse.GetValue(threads), parse.GetValue(exact), parse.GetValue(device)!)));

        return ProgramErrors.Invoke(root, args, "paretoq-run");
    }

    private sealed record Settings(string? Model, string? Prompt, int MaxTokens, SamplerOptions Sampler, int Context,
        KvCacheType KvCache, bool Chat, string? System, string? Perplexity, PerplexityMode PerplexityMode, int Threads,
        bool Exact, string Device);

    private static int Run(Settings s)
    {
        if (s.Prompt is not null && s.Prompt.Trim().Length == 0) throw new UsageException("the prompt is empty");
        if (s.Prompt is null && !s.Chat
            && s.Perplexity is null) throw new UsageException("give --prompt TEXT, --chat or --perplexity FILE");
        string path = ResolveModel(s.Model);
        using var backend = ComputeDevice.Create(s.Device,
            new CpuBackendOptions { Threads = s.Threads, Exact = s.Exact }, Accelerators);
        using var model = LanguageModel.Load(path, backend);
        var tokenizer = Tokenizers.FromFile(model.File, model.Config.VocabSize);
        using var session = new Session(model,
            new SessionOptions { ContextLength = s.Context, KvCache = s.KvCache,
            AllLogits = s.Perplexity is not null });
        if (s.Perplexity is not null) return Perplexity.Run(session, tokenizer, s.Perplexity, s.PerplexityMode);
        return s.Chat ? Chat(session, tokenizer, model.File, s) : Complete(session, tokenizer, model.File, s);
    }

    private static string ResolveModel(string? given)
    {
        if (given is not null)
        {
            InputFile.Check(given, problem => new PqFormatException(given, null, problem));
            return given;
        }
        foreach (string dir in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(dir); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, DefaultModel))) return Path.Combine(d.FullName, DefaultModel);
        throw new FileNotFoundException($"no --model given and the default model {DefaultModel} was not found (it ships in the repository; see models/README.md)");
    }

    private static int Complete(Session session, ITokenizer tokenizer, PqFile file, Settings s)
    {
        int[] ids = tokenizer.Encode(s.Prompt!, addBos: true);
        var result = Generate(session, tokenizer, file, s, ids);
        Console.WriteLine();
        PrintStats(result);
        // The partial text stays printed; the exit code says it was cut short.
        return result.Reason == StopReason.Cancelled ? ProgramErrors.Interrupted : 0;
    }

    private static int Chat(Session session, ITokenizer tokenizer, PqFile file, Settings s)
    {
        if (tokenizer is not TiktokenTextTokenizer llama4 || !llama4.SpecialTokens.ContainsKey("<|header_start|>"))
            throw new NotSupportedException($"{file.Path} has no Llama-4 chat tokens; --chat needs an instruct model");
        var first = new List<ChatTemplate.Message>();
        if (s.System is not null) first.Add(new("system", s.System));
        bool interactive = s.Prompt is null;
        string? user = s.Prompt;
        bool continuation = false;
        while (true)
        {
            if (interactive)
            {
                Console.Error.Write("> ");
                user = Console.ReadLine();
                if (user is null || user.Trim() is "/exit" or "/quit") return 0;
                if (user.Trim().Length == 0) continue;
            }
            var turn = continuation ? new List<ChatTemplate.Message>() : first;
            turn.Add(new("user", user!));
            int[] ids = ChatTemplate.Llama4(llama4, turn, continuation: continuation);
            var result = Generate(session, tokenizer, file, s, ids);
            Console.WriteLine();
            PrintStats(result);
            if (!interactive) return 0;
            // Close the assistant turn so the next user message follows the template.
            if (session.Position + 1 >= session.ContextLength) throw new ContextLengthExceededException($"the conversation filled the context of {session.ContextLength} tokens");
            session.Forward([llama4.Special("<|eot|>")]);
            continuation = true;
        }
    }

    private static GenerationResult Generate(Session session, ITokenizer tokenizer, PqFile file, Settings s, int[] ids)
    {
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            var stdout = Console.Out;
            var options = new GenerationOptions { MaxTokens = s.MaxTokens, Sampler = s.Sampler,
                EosIds = file.Tokenizer.EosIds };
            return new Generator(session, tokenizer).Generate(ids, options, text
                => { stdout.Write(text); stdout.Flush(); }, cancel.Token);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static void PrintStats(GenerationResult r) =>
        Console.Error.WriteLine(
            $"prompt {r.PromptTokens} tokens, prefill {r.PrefillTokensPerSecond:F1} tok/s | generated {r.GeneratedTokens} tokens, " +
            $"decode {r.DecodeTokensPerSecond:F1} tok/s | peak memory {Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024):F0} MiB | stop: {r.Reason}");
}
