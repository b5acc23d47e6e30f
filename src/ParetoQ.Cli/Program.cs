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
        var file = new Option<string?>("--file", "-f")
            { Description = "Read the prompt from this UTF-8 file; - reads standard input" };
        var maxTokens = new Option<int>("--max-tokens", "-n", "--n-predict")
        {
            Description = "Most tokens to generate; -1 runs until EOS or the context is full",
            DefaultValueFactory = _ => 256,
        };
        var stop = new Option<string[]>("--stop", "-r", "--reverse-prompt")
            { Description = "Stop before this text (repeatable); it is not printed" };
        var noEcho = new Option<bool>("--no-echo", "--no-display-prompt")
            { Description = "Do not print the prompt before the completion" };
        var json = new Option<bool>("--json")
            { Description = "Print one JSON object with the text and the statistics instead of streaming" };
        var temperature = new Option<float>("--temperature", "--temp")
            { Description = "Sampling temperature; 0 is greedy",
            DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens; 0 keeps all",
            DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling threshold; 1 is off",
            DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { Description = "Drop tokens below this fraction of the best one's probability; 0 is off", DefaultValueFactory = _ => 0.05f };
        var repeatPenalty = new Option<float>("--repeat-penalty") { Description = "Penalty on tokens of the last 64; 1 (the default) is off, so --temperature 0 is argmax", DefaultValueFactory = _ => 1f };
        var seed = new Option<string?>("--seed", "-s")
            { Description = "Random seed; the same seed gives the same text (default, or -1: random)" };
        seed.Check(v => Seed(v));
        var context = new Option<int>("--context",
            "-c", "--ctx-size") { Description = "Context length in tokens (default: min(model maximum, 4096))" };
        var kvCache = new Option<string>("--kv-cache") { Description = "KV cache type", DefaultValueFactory = _
            => "int8" };
        kvCache.AcceptOnlyFromAmong("int8", "f32");
        var chat = new Option<bool>("--chat", "-cnv", "--conversation")
            { Description = "Use the model's chat template; without --prompt, chat interactively" };
        var system = new Option<string?>("--system", "-sys", "--system-prompt")
            { Description = "System message for --chat" };
        var threads = new Option<int>("--threads",
            "-t") { Description = "Worker threads, 1 up to the cores this process may use (default: one per core)" };
        var exact = new Option<bool>("--exact") { Description = "Exact mode: fp32 activations through the scalar reference kernels (slow; for accuracy checks)" };
        var device = new Option<string>("--device") { Description = "cpu, or through ILGPU (JIT-hosted build only): cuda, opencl, ilgpu-cpu (a simulator, for tests), auto (cuda, then opencl, then cpu)", DefaultValueFactory = _ => "cpu" };
        device.AcceptOnlyFromAmong(ComputeDevice.Names);
        // llama.cpp's layer offload count: accepted so its command lines run; this program places the whole model on
        // --device.
        var gpuLayers = new Option<int?>("--n-gpu-layers", "-ngl", "--gpu-layers")
            { Description = "Accepted for llama.cpp's command lines and ignored: the whole model runs on --device" };
        var perplexity = new Option<string?>("--perplexity") { Description = "Print the model's perplexity over this UTF-8 text file instead of generating" };
        var list = new Option<bool>("--list")
            { Description = "List the models found in models/ of the current directory and beside the program" };
        var perplexityMode = new Option<string>("--perplexity-mode") { Description = "windows: sliding windows with half-context overlap, every token scored once; chunks: llama-perplexity's protocol (chunks of --context tokens starting with BOS, second halves scored), comparable with llama-perplexity -c N", DefaultValueFactory = _ => "windows" };
        perplexityMode.AcceptOnlyFromAmong("windows", "chunks");

        // Out-of-range values are usage errors, found by the engine's own checks at parse time.
        maxTokens.Check(n =>
        {
            if (n < -1) throw new ArgumentException($"--max-tokens {n} must be ≥ 0, or -1 for no limit");
        });
        temperature.Check(v => new SamplerOptions { Temperature = v }.Validate());
        topK.Check(v => new SamplerOptions { TopK = v }.Validate());
        topP.Check(v => new SamplerOptions { TopP = v }.Validate());
        minP.Check(v => new SamplerOptions { MinP = v }.Validate());
        repeatPenalty.Check(v => new SamplerOptions { RepeatPenalty = v }.Validate());
        threads.Check(v => ThreadCount.Check(v, "--threads"));
        context.Check(v => { if (v < 0) throw new ArgumentException($"--context {v} must be ≥ 0"); });

        var weights = new WeightMemoryOptions();
        var root = new RootCommand(Help)
        {
            model, prompt, file, maxTokens, stop, noEcho, json, temperature, topK, topP, minP, repeatPenalty, seed,
                context, kvCache, chat,
                system, perplexity, perplexityMode, threads, exact, device, gpuLayers, list, weights.Mmap,
                weights.NoMmap,
        };
        root.SetAction(parse =>
        {
            if (parse.GetValue(list)) return ListModels();
            if (parse.GetValue(gpuLayers) is not null)
                Console.Error.WriteLine("note: -ngl is ignored: the whole model runs on --device (cpu unless given)");
            return Run(new Settings(
            parse.GetValue(model), parse.GetValue(prompt), parse.GetValue(file),
            parse.GetValue(maxTokens) == -1 ? int.MaxValue : parse.GetValue(maxTokens),
            parse.GetValue(stop) ?? [], parse.GetValue(noEcho), parse.GetValue(json),
            new SamplerOptions
            {
                Temperature = parse.GetValue(temperature), TopK = parse.GetValue(topK), TopP = parse.GetValue(topP),
                    MinP = parse.GetValue(minP),
                RepeatPenalty = parse.GetValue(repeatPenalty), Seed = Seed(parse.GetValue(seed))
                    ?? SamplerOptions.RandomSeed(),
            },
            parse.GetValue(context), parse.GetValue(kvCache) == "f32" ? KvCacheType.F32 : KvCacheType.Int8,
            parse.GetValue(chat), parse.GetValue(system), parse.GetValue(perplexity),
            parse.GetValue(perplexityMode) == "chunks" ? PerplexityMode.Chunks : PerplexityMode.Windows,
                parse.GetValue(threads), parse.GetValue(exact), parse.GetValue(device)!, weights.Get(parse)));
        });

        return ProgramErrors.Invoke(root, args, "paretoq-run");
    }

    /// <summary>A --seed value: a whole number ≥ 0, or -1 (llama.cpp's) or none for a random seed.</summary>
    private static ulong? Seed(string? text) =>
        text is null or "-1" ? null
        : ulong.TryParse(text, System.Globalization.NumberStyles.None, null, out ulong value) ? value
        : throw new ArgumentException($"--seed '{text}' is not a whole number ≥ 0 (or -1 for a random seed)");

    private const string Help = """
        paretoq-run: run a ParetoQ low-bit language model (.pq)

        Examples:
          paretoq-run --prompt "Once upon a time"                       the shipped default model, streamed
          paretoq-run -m model.pq -f prompt.txt -n -1 --temperature 0   prompt from a file, greedy, until EOS
          echo "Once upon a time" | paretoq-run -m model.pq -f -        prompt from standard input
          paretoq-run -m model.pq -p "Tom said" --stop "." --json       one JSON object: text and statistics
          paretoq-run -m model.pq --chat                                interactive chat in the model's template
          paretoq-run -m model.pq --perplexity text.txt                 perplexity over a text file
        """;

    private sealed record Settings(string? Model, string? Prompt, string? PromptFile, int MaxTokens,
        IReadOnlyList<string> Stops, bool NoEcho, bool Json, SamplerOptions Sampler, int Context,
        KvCacheType KvCache, bool Chat, string? System, string? Perplexity, PerplexityMode PerplexityMode, int Threads,
        bool Exact, string Device, WeightMemory Weights);

    private static int Run(Settings s)
    {
        if (s.PromptFile is not null)
        {
            if (s.Prompt is not null) throw new UsageException("give --prompt or --file, not both");
            s = s with { Prompt = ReadPrompt(s.PromptFile) };
        }
        if (s.Prompt is not null && s.Prompt.Trim().Length == 0) throw new UsageException("the prompt is empty");
        if (s.Prompt is null && !s.Chat
            && s.Perplexity is null) throw new UsageException("give --prompt TEXT, --chat or --perplexity FILE");
        string path = ResolveModel(s.Model);
        using var backend = ComputeDevice.Create(s.Device,
            new CpuBackendOptions { Threads = s.Threads, Exact = s.Exact }, Accelerators);
        using var model = LanguageModel.Load(path, backend, s.Weights);
        var tokenizer = Tokenizers.FromFile(model.File, model.Config.VocabSize);
        using var session = new Session(model,
            new SessionOptions { ContextLength = s.Context, KvCache = s.KvCache,
            AllLogits = s.Perplexity is not null });
        if (s.Perplexity is not null) return Perplexity.Run(session, tokenizer, s.Perplexity, s.PerplexityMode, s.Json);
        return s.Chat ? Chat(session, tokenizer, model.File, s) : Complete(session, tokenizer, model.File, s);
    }

    // The longest prompt file read: far beyond any context, and bounded.
    private const int MaxPromptBytes = 64 << 20;

    private static string ReadPrompt(string path)
    {
        byte[] bytes;
        if (path == "-")
        {
            using var stdin = Console.OpenStandardInput();
            using var buffer = new MemoryStream();
            var chunk = new byte[81920];
            for (int n; (n = stdin.Read(chunk)) > 0;)
            {
                if (buffer.Length + n > MaxPromptBytes)
                    throw new InvalidDataException($"standard input holds more than {MaxPromptBytes} bytes of prompt");
                buffer.Write(chunk, 0, n);
            }
            bytes = buffer.ToArray();
        }
        else bytes = InputFile.ReadAll(path, MaxPromptBytes, problem => new InvalidDataException($"{path} {problem}"));
        string name = path == "-" ? "standard input" : path;
        try
        {
            return new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes).TrimEnd('\n', '\r');
        }
        catch (System.Text.DecoderFallbackException e)
        {
            throw new InvalidDataException($"{name} is not valid UTF-8 (byte {e.Index})");
        }
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

    // The .pq files in models/ of the current directory and beside the program, with the one used without -m marked.
    private static int ListModels()
    {
        string? chosen = null;
        try { chosen = ResolveModel(null); }
        catch (FileNotFoundException) { }
        var dirs = new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory }
            .Select(d => Path.GetFullPath(Path.Combine(d, "models"))).Distinct().Where(Directory.Exists);
        int found = 0;
        foreach (string path in dirs.SelectMany(d => Directory.EnumerateFiles(d, "*.pq").Order()))
        {
            found++;
            string mark = chosen is not null && Path.GetFullPath(chosen) == path ? "  (default: used without -m)" : "";
            try
            {
                using var file = PqFile.Open(path, verifyChecksums: false);
                string arch = file.Config.TryGetProperty("architecture", out var a) ? a.ToString() : "?";
                Console.WriteLine($"{path}  {file.FileLength / 1024.0:F0} KiB  {arch}  {file.Provenance.Bits} bits{mark}");
            }
            catch (Exception e) when (e is PqFormatException or IOException or UnauthorizedAccessException)
            {
                Console.WriteLine($"{path}  unreadable: {ProgramErrors.OneLine(ProgramErrors.Describe(e))}");
            }
        }
        if (found == 0) Console.Error.WriteLine("no models found in models/ here or beside the program");
        return 0;
    }

    private static int Complete(Session session, ITokenizer tokenizer, PqFile file, Settings s)
    {
        int[] ids = tokenizer.Encode(s.Prompt!, addBos: true);
        if (!s.NoEcho && !s.Json) Console.Write(s.Prompt);
        var result = Generate(session, tokenizer, file, s, ids);
        if (s.Json)
        {
            WriteJson(result, s.NoEcho ? null : s.Prompt);
            return result.Reason == StopReason.Cancelled ? ProgramErrors.Interrupted : 0;
        }
        Console.WriteLine();
        PrintStats(result);
        // The partial text stays printed; the exit code says it was cut short.
        return result.Reason == StopReason.Cancelled ? ProgramErrors.Interrupted : 0;
    }

    private const string ChatHelp = """
        /help         this list
        /clear        forget the conversation (the system message stays)
        /regen        answer the last message again
        /save FILE    write the conversation to a new JSON file ({"messages": [{"role", "content"}]})
        /load FILE    continue a conversation from such a file
        /exit, /quit  leave (so does end of input)
        When the conversation outgrows the context, the oldest turns are dropped (the system message stays).
        """;

    private static int Chat(Session session, ITokenizer tokenizer, PqFile file, Settings s)
    {
        var template = ChatTemplate.For(tokenizer, file.Tokenizer);
        if (template.Format == ChatFormat.Plain)
            Console.Error.WriteLine($"note: {Path.GetFileName(file.Path)} has no chat template, so the plain one is " +
                "used (User: / Assistant: lines); a base model continues the text rather than following instructions");
        var conversation = new List<ChatTemplate.Message>();
        if (s.System is not null) conversation.Add(new("system", s.System));
        bool interactive = s.Prompt is null;
        if (interactive && s.Json) throw new UsageException("--json needs --prompt (one answer, not a conversation)");
        // Room kept for each reply when the conversation is fitted into the context.
        int replyRoom = Math.Max(1, Math.Min(s.MaxTokens, session.ContextLength / 4));
        // The session holds the conversation so far with the last reply closed, so a turn feeds only itself, until a
        // command or a full context makes it re-read the (fitted) conversation from the start.
        bool reread = true;
        while (true)
        {
            if (interactive)
            {
                Console.Error.Write("> ");
                string? line = Console.ReadLine();
                if (line is null) return 0;
                string input = line.Trim();
                if (input.Length == 0) continue;
                if (input.StartsWith('/'))
                {
                    if (input is "/exit" or "/quit") return 0;
                    reread |= ChatCommand(input, conversation, s.System);
                    if (!(input == "/regen" && conversation.Count > 0 && conversation[^1].Role == "user")) continue;
                }
                else conversation.Add(new("user", line));
            }
            else conversation.Add(new("user", s.Prompt!));
            int[] ids = [];
            reread |= template.CloseReply is null || session.Position == 0;
            if (!reread)
            {
                ids = template.Encode([conversation[^1]], continuation: true);
                reread = session.Position + ids.Length + replyRoom > session.ContextLength;
            }
            if (reread)
            {
                try
                {
                    (ids, int dropped) = ChatHistory.Fit(template, conversation, session.ContextLength - replyRoom);
                    if (dropped > 0)
                        Console.Error.WriteLine("note: the conversation outgrew the context of " +
                            $"{session.ContextLength} tokens; the oldest {dropped} messages were dropped");
                }
                catch (ContextLengthExceededException e) when (interactive)
                {
                    Console.Error.WriteLine($"paretoq-run: {e.Message}; the message was not sent");
                    conversation.RemoveAt(conversation.Count - 1);
                    continue;
                }
                session.Reset();
                reread = false;
            }
            var result = Generate(session, tokenizer, file, s, ids, template);
            if (s.Json)
            {
                WriteJson(result, null);
                return 0;
            }
            Console.WriteLine();
            PrintStats(result);
            if (!interactive) return result.Reason == StopReason.Cancelled ? ProgramErrors.Interrupted : 0;
            conversation.Add(new("assistant", result.Text.Trim()));
            if (template.CloseReply is { } close && session.Position + close.Length < session.ContextLength)
                session.Forward(close);
            else reread = true;
        }
    }

    // A chat command other than /exit; true when the session must re-read the conversation.
    private static bool ChatCommand(string input, List<ChatTemplate.Message> conversation, string? system)
    {
        int space = input.IndexOf(' ');
        string command = space < 0 ? input : input[..space], argument = space < 0 ? "" : input[(space + 1)..].Trim();
        try
        {
            switch (command)
            {
                case "/help":
                    Console.Error.WriteLine(ChatHelp);
                    return false;
                case "/clear":
                    conversation.Clear();
                    if (system is not null) conversation.Add(new("system", system));
                    Console.Error.WriteLine("note: the conversation is cleared");
                    return true;
                case "/regen":
                    if (conversation.Count > 0 && conversation[^1].Role == "assistant")
                        conversation.RemoveAt(conversation.Count - 1);
                    if (conversation.Count == 0 || conversation[^1].Role != "user")
                        Console.Error.WriteLine("note: there is no message to answer again");
                    return true;
                case "/save" when argument.Length > 0:
                    ChatHistory.Save(argument, conversation);
                    Console.Error.WriteLine($"note: {conversation.Count} messages saved to {argument}");
                    return false;
                case "/load" when argument.Length > 0:
                    var loaded = ChatHistory.Load(argument);
                    conversation.Clear();
                    conversation.AddRange(loaded);
                    Console.Error.WriteLine($"note: {loaded.Count} messages loaded from {argument}");
                    return true;
                case "/save" or "/load":
                    Console.Error.WriteLine($"paretoq-run: {command} needs a file name");
                    return false;
                default:
                    Console.Error.WriteLine($"paretoq-run: unknown command {command} (/help lists them)");
                    return false;
            }
        }
        catch (OutputExistsException e)
        {
            Console.Error.WriteLine($"paretoq-run: {e.OutputPath} already exists; /save writes only new files");
            return false;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"paretoq-run: {ProgramErrors.OneLine(ProgramErrors.Describe(e))}");
            return false;
        }
    }

    private static GenerationResult Generate(Session session, ITokenizer tokenizer, PqFile file, Settings s, int[] ids,
        ChatTemplate? chat = null)
    {
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            var stdout = Console.Out;
            var options = new GenerationOptions { MaxTokens = s.MaxTokens, Sampler = s.Sampler,
                EosIds = [.. file.Tokenizer.EosIds, .. chat?.EndOfTurnIds ?? []],
                StopStrings = [.. s.Stops, .. chat?.StopStrings ?? []] };
            Action<string>? print = s.Json ? null : text => { stdout.Write(text); stdout.Flush(); };
            return new Generator(session, tokenizer).Generate(ids, options, print, cancel.Token);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    // One object on stdout: the prompt (unless --no-echo), the completion and the statistics.
    private static void WriteJson(GenerationResult r, string? prompt)
    {
        using var stdout = Console.OpenStandardOutput();
        using (var w = new System.Text.Json.Utf8JsonWriter(stdout, new System.Text.Json.JsonWriterOptions
            { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (prompt is not null) w.WriteString("prompt", prompt);
            w.WriteString("text", r.Text);
            w.WriteNumber("prompt_tokens", r.PromptTokens);
            w.WriteNumber("generated_tokens", r.GeneratedTokens);
            w.WriteNumber("prefill_seconds", Math.Round(r.Prefill.TotalSeconds, 6));
            w.WriteNumber("decode_seconds", Math.Round(r.Decode.TotalSeconds, 6));
            w.WriteNumber("prefill_tokens_per_second", Math.Round(r.PrefillTokensPerSecond, 2));
            w.WriteNumber("decode_tokens_per_second", Math.Round(r.DecodeTokensPerSecond, 2));
            w.WriteNumber("peak_memory_mib", Process.GetCurrentProcess().PeakWorkingSet64 / (1024 * 1024));
            w.WriteString("stop", r.Reason.ToString());
            w.WriteEndObject();
        }
        stdout.Write("\n"u8);
    }

    // Under the JIT (dotnet run, the tool package) the first call's speeds include compiling the code paths, tens of
    // times slower than the native programs: the line says so rather than let it pass for the engine's speed.
    private static bool s_warmedUp = !System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeCompiled;

    private static void PrintStats(GenerationResult r)
    {
        string jit = s_warmedUp ? ""
            : " (JIT build: this first call includes compiling the code; the native build does not)";
        s_warmedUp = true;
        Console.Error.WriteLine(
            $"prompt {r.PromptTokens} tokens, prefill {r.PrefillTokensPerSecond:F1} tok/s | generated {r.GeneratedTokens} tokens, " +
            $"decode {r.DecodeTokensPerSecond:F1} tok/s | peak memory {Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024):F0} MiB | stop: {r.Reason}{jit}");
    }
}
