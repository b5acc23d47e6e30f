using System.CommandLine;
using ParetoQ.CommandLine;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Bench;

/// <summary>paretoq-bench: kernel, memory-bandwidth and whole-model speed on this machine, as tables or JSON.</summary>
public static class Program
{
#if PARETOQ_ILGPU
    private static readonly Func<string, IComputeBackend?>? Accelerators = ParetoQ.Accelerators.IlgpuDevices.TryCreate;
#else
    private static readonly Func<string, IComputeBackend?>? Accelerators = null;
#endif

    public static int Main(string[] args)
    {
        var root = new RootCommand("paretoq-bench: measure ParetoQ.Runtime kernels, memory bandwidth and model speed");
        root.Subcommands.Add(KernelsCommand());
        root.Subcommands.Add(AttentionCommand());
        root.Subcommands.Add(BandwidthCommand());
        root.Subcommands.Add(ModelCommand());
        root.Subcommands.Add(MultipleChoiceCommand());
        root.Subcommands.Add(DevicesCommand());
        root.Subcommands.Add(ServeCommand());
        return ProgramErrors.Invoke(root, args, "paretoq-bench");
    }

    private static Option<int> Threads()
        => new("--threads",
        "-t") { Description = "Worker threads, 1 up to the cores this process may use (default: one per core)" };
    private static Option<bool> Json() => new("--json") { Description = "Write results as JSON to stdout" };
    private static Option<double> MinTime()
        => new("--min-time") { Description = "Seconds to repeat each measurement for", DefaultValueFactory = _ => 0.3 };

    private static Command KernelsCommand()
    {
        var threads = Threads();
        var json = Json();
        var minTime = MinTime();
        var formats = new Option<string>("--formats") { Description = "Comma-separated weight formats",
            DefaultValueFactory = _ => "binary,ternary,q2_seq,q3_row,q4_row,q4_g32,i8_row" };
        var paths = new Option<string>("--paths") { Description = "Kernel paths: best, all, or a comma-separated list (scalar, avx2, avxvnni, avx512, avx512gfni, neon)", DefaultValueFactory = _ => "best" };
        var shapes = new Option<string?>("--shapes") { Description = "Only shapes whose name contains one of these comma-separated words (e.g. up,head)" };
        var tokens = new Option<string>("--n") { Description = "Comma-separated token counts (1 = decode GEMV, 512 = prefill GEMM)", DefaultValueFactory = _ => "1,512" };
        var cold = new Option<bool>("--cold") { Description = "Rotate over copies of each matrix adding up to 512 MiB, so weights stream from DRAM as in a model" };
        var bound = new Option<bool>("--bound") { Description = "Decode GEMV bounds per shape, format and path: arithmetic only (codes in L1, 1 thread), loads only (read bandwidth, 1 and all threads) and cold (1 and all threads), in GB/s of packed weights" };
        var cmd = new Command("kernels",
            "Time each packed matmul per format and path at MobileLLM shapes: µs, GOPS, weight GB/s")
        {
            threads, json, minTime, formats, paths, shapes, tokens, cold, bound,
        };
        cmd.SetAction(parse =>
        {
            using var pool = new WorkerPool(ThreadCount(parse.GetValue(threads)));
            var report = new BenchReport("kernels");
            report.Fact("threads", pool.Threads);
            report.Fact("best_path", KernelDispatch.Name(KernelDispatch.Best));
            string? filter = parse.GetValue(shapes);
            var selected = KernelBench.DefaultShapes.Where(s => filter is null
                || Split(filter).Any(f => s.Name.Contains(f, StringComparison.OrdinalIgnoreCase))).ToList();
            if (selected.Count == 0) throw new UsageException($"no shape matches '{filter}'");
            if (parse.GetValue(bound))
            {
                using var single = new WorkerPool(1);
                BoundBench.Run(report, single, pool, ParsePaths(parse.GetValue(paths)!),
                    ParseFormats(parse.GetValue(formats)!), selected, parse.GetValue(minTime), Console.Error);
                report.Print(parse.GetValue(json), Console.Out);
                return 0;
            }
            KernelBench.Run(report, pool, ParsePaths(parse.GetValue(paths)!), ParseFormats(parse.GetValue(formats)!),
                selected, Split(parse.GetValue(tokens)!).Select(ParsePositive).ToList(), parse.GetValue(minTime),
                    Console.Error, parse.GetValue(cold));
            report.Print(parse.GetValue(json), Console.Out);
            return 0;
        });
        return cmd;
    }

    private static Command AttentionCommand()
    {
        var json = Json();
        var minTime = MinTime();
        var paths = new Option<string>("--paths")
            { Description = "Kernel paths: best, all, or a comma-separated list", DefaultValueFactory = _ => "best" };
        var contexts = new Option<string>("--contexts")
            { Description = "Comma-separated cached positions", DefaultValueFactory = _ => "128,512,2048" };
        var kvHeads = new Option<int>("--kv-heads")
            { Description = "KV heads (MobileLLM-1B: 5)", DefaultValueFactory = _ => 5 };
        var group = new Option<int>("--group")
            { Description = "Query heads per KV head (MobileLLM-1B: 4)", DefaultValueFactory = _ => 4 };
        var headDim = new Option<int>("--head-dim")
            { Description = "Head size (MobileLLM-1B: 64)", DefaultValueFactory = _ => 64 };
        var footprint = new Option<int>("--footprint-mb")
        {
            Description = "MiB of caches visited in turn: 256 streams them from memory, 1 keeps them in L2",
            DefaultValueFactory = _ => 256,
        };
        var cmd = new Command("attention",
            "Time one decode token's attention over an int8 KV cache, per path and context, on 1 thread")
        {
            json, minTime, paths, contexts, kvHeads, group, headDim, footprint,
        };
        cmd.SetAction(parse =>
        {
            var report = new BenchReport("attention");
            var contextList = Split(parse.GetValue(contexts)!).Select(ParsePositive).ToList();
            int heads = Positive(parse.GetValue(kvHeads), "--kv-heads"), dim = Positive(parse.GetValue(headDim),
                "--head-dim");
            // One layer's cache must fit the bench's buffers (and the machine): 1 GiB at most.
            if (contextList.FirstOrDefault(c => 2L * heads * c * (dim + 5) > MaxLayerCacheBytes) is > 0 and var big)
                throw new UsageException($"a cache of {big} positions × {heads} KV heads × {dim} is over 1 GiB");
            AttentionBench.Run(report, ParsePaths(parse.GetValue(paths)!), contextList, heads,
                Positive(parse.GetValue(group), "--group"), dim,
                (long)Positive(parse.GetValue(footprint), "--footprint-mb") << 20, parse.GetValue(minTime),
                Console.Error);
            report.Print(parse.GetValue(json), Console.Out);
            return 0;
        });
        return cmd;
    }

    private const long MaxLayerCacheBytes = 1L << 30;

    private static int Positive(int value, string option) => value is > 0 and <= 4096 ? value
        : throw new UsageException($"{option} must be between 1 and 4096, not {value}");

    private static Command BandwidthCommand()
    {
        var threads = Threads();
        var json = Json();
        var size = new Option<int>("--size-mb") { Description = "Buffer size in MiB (far larger than the caches)",
            DefaultValueFactory = _ => 1024 };
        var cmd = new Command("bandwidth", "Measure memory read bandwidth: the decode roofline") { threads, json,
            size };
        cmd.SetAction(parse =>
        {
            var report = new BenchReport("bandwidth");
            int max = ThreadCount(parse.GetValue(threads));
            foreach (int t in Enumerable.Range(1, max).Where(t => t == 1 || t == max || (t & (t - 1)) == 0))
            {
                using var pool = new WorkerPool(t);
                double gbs = BandwidthBench.Measure(pool, (long)ParsePositive(parse.GetValue(size).ToString()) << 20);
                report.Row(("threads", t), ("read_GB/s", gbs));
            }
            report.Print(parse.GetValue(json), Console.Out);
            return 0;
        });
        return cmd;
    }

    private static Command ModelCommand()
    {
        var threads = Threads();
        var json = Json();
        var modelFile = new Option<string?>("--model",
            "-m") { Description = "Benchmark this .pq file instead of generated ones" };
        var presets = new Option<string?>("--preset") { Description = "Generated architecture: mobilellm-1b, mobilellm-pro-1b or tiny (default: the full matrix)" };
        var formats = new Option<string?>("--formats") { Description = "Projection formats for --preset (comma-separated)" };
        var head = new Option<string>("--head") { Description = "Embedding/head format of generated models: i8_row, " +
            "q4_g32, f16, bf16, f32", DefaultValueFactory = _ => "i8_row" };
        head.AcceptOnlyFromAmong([.. WeightFormats.HeadFormats.Select(WeightFormats.Name)]);
        var prompts = new Option<string>("--prompts") { Description = "Prompt lengths to prefill; decode is timed right after each", DefaultValueFactory = _ => "128,512,2048" };
        var decode = new Option<int>("--decode") { Description = "Tokens decoded after each prefill",
            DefaultValueFactory = _ => 32 };
        var repetitions = new Option<int>("--repetitions", "-r") { Description = "Runs of each prefill and decode; " +
            "rows give the mean ± standard deviation", DefaultValueFactory = _ => 3 };
        var output = new Option<string>("--output", "-o") { Description = "Output format: md, csv, json, jsonl or " +
            "table", DefaultValueFactory = _ => "md" };
        var kernels = new Option<string?>("--kernels") { Description = "Kernel path (default: the best one)" };
        var exact = new Option<bool>("--exact") { Description = "Exact mode: fp32 activations, scalar kernels" };
        var dir = new Option<string>("--dir") { Description = "Where generated models are cached",
            DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "paretoq-bench") };
        var bandwidth = new Option<double>("--bandwidth")
        {
            Description = "Read bandwidth in GB/s for the roofline column; 0 measures it first (the median of five " +
                "512 MiB passes, printed with its range)",
            DefaultValueFactory = _ => 0,
        };
        var profile = new Option<bool>("--profile") { Description = "Print the prefill and decode time per backend operation (to stderr)" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Give generated models this LLaMA-style tokenizer.json instead of the byte-level vocabulary, so they export to GGUF (paretoq-convert --to gguf)" };
        var device = new Option<string>("--device") { Description = "cpu, or through ILGPU (JIT-hosted build only): cuda, opencl, ilgpu-cpu, auto", DefaultValueFactory = _ => "cpu" };
        device.AcceptOnlyFromAmong(ComputeDevice.Names);
        var weights = new WeightMemoryOptions();
        var cmd = new Command("model", "Prefill and decode tokens/s of whole models")
        {
            threads, json, modelFile, presets, formats, head, prompts, decode, repetitions, output, kernels, exact, dir,
                bandwidth, profile, tokenizer, device, weights.Mmap, weights.NoMmap,
        };
        cmd.SetAction(parse =>
        {
            var options = new CpuBackendOptions
            {
                Threads = ThreadCount(parse.GetValue(threads)), Exact = parse.GetValue(exact),
                Kernels = parse.GetValue(kernels) is { } k ? KernelDispatch.Parse(k) : null,
            };
            var format = parse.GetValue(json) ? ReportFormat.Json : BenchReport.ParseFormat(parse.GetValue(output)!);
            int reps = parse.GetValue(repetitions);
            if (reps < 1) throw new UsageException($"--repetitions {reps} must be at least 1");
            var report = new BenchReport("model");
            // One backend for every model of the run (an accelerator compiles its kernels once); models load onto it in
            // turn.
            using var backend = ComputeDevice.Create(parse.GetValue(device)!, options, Accelerators);
            report.Fact("device", backend.Name);
            if (backend is CpuBackend)
            {
                report.Fact("threads", options.Threads);
                report.Fact("kernels", options.Exact ? "exact"
                    : KernelDispatch.Name(options.Kernels ?? KernelDispatch.Default));
            }
            double bw = parse.GetValue(bandwidth);
            if (bw <= 0)
            {
                var (median, low, high) = ReadBandwidth(backend, options.Threads);
                bw = median;
                report.Footer("read_GB/s", $"{median:F1} (median of 5; {low:F1}-{high:F1})");
            }
            else report.Footer("read_GB/s", $"{bw:F1} (--bandwidth)");
            report.Footer("build", typeof(Program).Assembly.GetCustomAttributes(typeof(
                System.Reflection.AssemblyInformationalVersionAttribute), false) is [System.Reflection.
                AssemblyInformationalVersionAttribute v, ..] ? v.InformationalVersion : "unknown");
            report.Footer("cpu", KernelChoice.CpuModel());
            var promptLengths = Split(parse.GetValue(prompts)!).Select(ParsePositive).ToList();
            int decodeTokens = parse.GetValue(decode);
            if (decodeTokens < 1) throw new UsageException("--decode must be at least 1");
            // Rows measured before a failure are printed before its message.
            try
            {
            if (parse.GetValue(modelFile) is { } file)
            {
                ModelBench.Run(report, file, Path.GetFileName(file), backend, promptLengths, decodeTokens, reps, bw,
                    Console.Error, parse.GetValue(profile), weights.Get(parse));
            }
            else
            {
                var headFormat = WeightFormats.ParseOption(parse.GetValue(head)!);
                var matrix = ModelBench.DefaultModels.AsEnumerable();
                if (parse.GetValue(presets) is { } p)
                {
                    RandomModels.Preset(p);
                    var fs = parse.GetValue(formats) is { } f ? ParseFormats(f) : [WeightFormat.Q2Seq];
                    matrix = fs.Select(x => (p, x));
                }
                foreach (var (preset, projections) in matrix)
                {
                    string path = ModelBench.EnsureModel(parse.GetValue(dir)!, preset, projections, headFormat,
                        parse.GetValue(tokenizer), Console.Error);
                    ModelBench.Run(report, path,
                        $"{preset} {WeightFormats.Name(projections)} ({Path.GetFileName(path)})", backend,
                        promptLengths, decodeTokens, reps, bw, Console.Error, parse.GetValue(profile),
                        weights.Get(parse));
                }
            }
            }
            finally
            {
                report.Print(format, Console.Out);
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>Read bandwidth of the memory the backend's weights live in (host RAM for the CPU, device memory for an
    /// accelerator): a median with its range, so the roofline fraction does not swing with one lucky pass.</summary>
    private static (double Median, double Low, double High) ReadBandwidth(IComputeBackend backend, int threads)
    {
#if PARETOQ_ILGPU
        if (backend is ParetoQ.Accelerators.IlgpuBackend gpu)
            return BandwidthBench.Stable(() => gpu.MeasureReadBandwidth(1L << 30));
#endif
        using var pool = new WorkerPool(threads);
        return BandwidthBench.MeasureStable(pool);
    }

    private static Command DevicesCommand()
    {
        var cmd = new Command("devices", "List the compute devices this build can run models on (--device)");
        cmd.SetAction(_ =>
        {
            Console.WriteLine($"cpu        {Environment.ProcessorCount} logical cores, kernels {KernelDispatch.Name(KernelDispatch.Default)}");
#if PARETOQ_ILGPU
            foreach (string line in ParetoQ.Accelerators.IlgpuDevices.Describe()) Console.WriteLine(line);
#else
            Console.WriteLine("(this NativeAOT build has no ILGPU devices: ILGPU compiles kernels at run time; use the JIT-hosted build, dotnet run -c Release --project src/ParetoQ.Bench -- devices)");
#endif
            return 0;
        });
        return cmd;
    }

    private static Command ServeCommand()
    {
        var json = Json();
        var url = new Option<string>("--url")
            { Description = "The server's base address", DefaultValueFactory = _ => "http://127.0.0.1:8080/" };
        var clients = new Option<string>("--clients")
            { Description = "Concurrent clients, comma-separated", DefaultValueFactory = _ => "1,4" };
        var requests = new Option<int>("--requests")
            { Description = "Requests per client count", DefaultValueFactory = _ => 16 };
        var maxTokens = new Option<int>("--max-tokens")
            { Description = "max_tokens of each request", DefaultValueFactory = _ => 128 };
        var cmd = new Command("serve",
            "Aggregate completion tokens/s of a running OpenAI-compatible server with 1 and more concurrent clients")
        {
            json, url, clients, requests, maxTokens,
        };
        cmd.SetAction(async (parse, cancellation) =>
        {
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var baseAddress))
                throw new UsageException($"--url '{parse.GetValue(url)}' is not an absolute address");
            int count = parse.GetValue(requests), tokens = parse.GetValue(maxTokens);
            if (count < 1) throw new UsageException($"--requests {count} must be at least 1");
            if (tokens < 1) throw new UsageException($"--max-tokens {tokens} must be at least 1");
            using var http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromMinutes(10) };
            string model = await ServeBench.ModelIdAsync(http);
            var report = new BenchReport("serve");
            report.Fact("url", baseAddress.ToString());
            report.Fact("model", model);
            foreach (int c in Split(parse.GetValue(clients)!).Select(ParsePositive))
            {
                var r = await ServeBench.RunAsync(http, model, c, count, tokens);
                report.Row(("clients", c), ("requests", r.Requests), ("completion_tokens", r.CompletionTokens),
                    ("seconds", r.Seconds), ("aggregate_tok/s", r.TokensPerSecond), ("mean_latency_s", r.MeanLatency));
            }
            report.Print(parse.GetValue(json), Console.Out);
            return 0;
        });
        return cmd;
    }

    private static Command MultipleChoiceCommand()
    {
        var threads = Threads();
        var json = Json();
        var jsonl = new Option<string>("--jsonl") { Description = "Questions, one JSON object per line: {\"context\": …, \"choices\": [ … ], \"label\": index}", Required = true };
        var modelFile = new Option<string>("--model", "-m") { Description = "The .pq model", Required = true };
        var limit = new Option<int>("--limit") { Description = "Score only the first N questions; 0 scores all" };
        var context = new Option<int>("--context",
            "-c") { Description = "Context length (default: min(model maximum, 4096))" };
        var exact = new Option<bool>("--exact") { Description = "Exact mode: fp32 activations, scalar kernels" };
        var cmd = new Command("mc",
            "Multiple-choice accuracy: each choice scored by its log-likelihood after the context (ARC, PIQA, HellaSwag style)")
        {
            threads, json, jsonl, modelFile, limit, context, exact,
        };
        cmd.SetAction(parse =>
        {
            var items = MultipleChoice.Read(parse.GetValue(jsonl)!);
            if (parse.GetValue(limit) is var n && n < 0) throw new UsageException($"--limit {n} must be ≥ 0");
            if (n > 0) items = items.Take(n).ToList();
            using var model = LanguageModel.Load(parse.GetValue(modelFile)!,
                new CpuBackendOptions { Threads = ThreadCount(parse.GetValue(threads)),
                Exact = parse.GetValue(exact) });
            var tokenizer = Runtime.Text.Tokenizers.FromFile(model.File, model.Config.VocabSize);
            using var session = new Session(model,
                new SessionOptions { AllLogits = true, ContextLength = parse.GetValue(context) });
            var timer = System.Diagnostics.Stopwatch.StartNew();
            var scores = new List<ChoiceScore>();
            foreach (var score in MultipleChoice.Score(session, tokenizer, items))
            {
                scores.Add(score);
                if (!Console.IsErrorRedirected) Console.Error.Write($"\r{scores.Count}/{items.Count} questions, accuracy {scores.Count(s => s.Picked == s.Item.Label) / (double)scores.Count:P1}");
            }
            if (!Console.IsErrorRedirected) Console.Error.WriteLine();
            double acc = scores.Count(s => s.Picked == s.Item.Label) / (double)scores.Count;
            double accNorm = scores.Count(s => s.PickedNormalized == s.Item.Label) / (double)scores.Count;
            var report = new BenchReport("mc");
            report.Fact("model", parse.GetValue(modelFile)!);
            report.Fact("questions", scores.Count);
            report.Fact("acc", acc);
            report.Fact("acc_stderr", Math.Sqrt(acc * (1 - acc) / Math.Max(1, scores.Count - 1)));
            report.Fact("acc_norm", accNorm);
            report.Fact("chance", scores.Average(s => 1.0 / s.Item.Choices.Count));
            report.Fact("seconds", timer.Elapsed.TotalSeconds);
            report.Print(parse.GetValue(json), Console.Out);
            return 0;
        });
        return cmd;
    }

    private static int ThreadCount(int requested)
    {
        try
        {
            return Runtime.Kernels.ThreadCount.Check(requested, "--threads");
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }

    private static string[] Split(string list)
        => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static int ParsePositive(string s) =>
        int.TryParse(s, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture,
            out int v) && v > 0
            ? v : throw new UsageException($"'{s}' is not a positive integer");

    private static List<WeightFormat> ParseFormats(string list) => Split(list).Select(n =>
        WeightFormats.TryParseOption(n, out var f) && WeightFormats.IsPacked(f) ? f
            : throw new UsageException($"unknown packed format '{n}' (1, 1.58, 2, 3, 4 or a name: {string.Join(", ", WeightFormats.OptionNames(WeightFormats.IsPacked).Skip(5))})")).ToList();

    private static List<KernelPath> ParsePaths(string list) => list switch
    {
        "best" => [KernelDispatch.Default],
        "all" => [.. KernelDispatch.Supported],
        _ => Split(list).Select(KernelDispatch.Parse).ToList(),
    };
}
