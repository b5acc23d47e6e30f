using System.CommandLine;
using System.Globalization;
using System.Text;
using ParetoQ.CommandLine;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Trainer;

/// <summary>paretoq-train: tokenize a corpus, pretrain in full precision, QAT to 1–4 bits, export to .pq.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("paretoq-train: train MobileLLM-style models in full precision and with ParetoQ quantization-aware training");
        root.Subcommands.Add(DataCommand());
        root.Subcommands.Add(TrainCommand("pretrain", "Train a new model in full precision"));
        root.Subcommands.Add(TrainCommand("qat", "Quantization-aware training from a full-precision checkpoint"));
        root.Subcommands.Add(ExportCommand());
        root.Subcommands.Add(ImportCommand());
        root.Subcommands.Add(SampleCommand());
        root.Subcommands.Add(ChartCommand());
        return ProgramErrors.Invoke(root, args, "paretoq-train");
    }

    private static readonly string[] Presets = ["tiny", "mobilellm-7m"];

    /// <summary>The model sizes <c>pretrain --model</c> knows.</summary>
    public static ModelConfig Preset(string name, int vocab) => name switch
    {
        // CI's smoke run: seconds per step on 2 cores.
        "tiny" => Config(vocab, dim: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, context: 128),
        // The shipped experiment: MobileLLM's deep-thin shape at ~7M non-embedding parameters (8.2M tied embedding).
        "mobilellm-7m" => Config(vocab, dim: 256, layers: 10, heads: 4, kvHeads: 1, ffn: 704, context: 512),
        _ => throw new UsageException($"unknown model '{name}' (tiny or mobilellm-7m)"),
    };

    private static ModelConfig Config(int vocab, int dim, int layers, int heads, int kvHeads, int ffn, int context)
        => new()
    {
        Architecture = "mobilellm", VocabSize = vocab, HiddenSize = dim, IntermediateSize = ffn, NumLayers = layers,
            NumHeads = heads,
        NumKvHeads = kvHeads, HeadDim = dim / heads, MaxPositionEmbeddings = context, RmsNormEps = 1e-5f,
            RopeTheta = 10000,
        RopeLayout = RopeLayout.RotateHalf, TieWordEmbeddings = true,
        LayerTypes = Enumerable.Repeat(AttentionKind.Global, layers).ToArray(),
            RopeLayers = Enumerable.Repeat(true, layers).ToArray(),
    };

    private static Command DataCommand()
    {
        var text = new Option<string[]>("--text")
        {
            Description = "UTF-8 text files: one document per non-empty line, or per {\"text\": ...} line of a " +
                ".jsonl file",
            Required = true, AllowMultipleArgumentsPerToken = true,
        };
        var tokenizer = new Option<string>("--tokenizer") { Description = "A LLaMA-style tokenizer.json, or a .pq model whose own tokenizer to use",
            Required = true };
        var output = new Option<string>("--output",
            "-o") { Description = "Directory for train.tokens, val.tokens, val.txt (the held-out text) and tokenizer.json", Required = true };
        var every = new Option<int>("--validation-every") { Description = "Every N-th document goes to the validation split", DefaultValueFactory = _ => 20 };
        var force = new Option<bool>("--force") { Description = "Replace existing token files" };
        var cmd = new Command("data", "Tokenize text files into training and validation token files") { text, tokenizer,
            output, every, force };
        cmd.SetAction(p =>
        {
            string dir = p.GetValue(output)!;
            var source = TrainingTokenizer.Load(p.GetValue(tokenizer)!);
            var (info, tok) = (source.Info, source.Tokenizer);
            Directory.CreateDirectory(dir);
            var report = TokenData.Build(p.GetValue(text)!.SelectMany(TrainingText.Documents), tok, tok.VocabSize,
                Path.Combine(dir, "train.tokens"),
                Path.Combine(dir, "val.tokens"), p.GetValue(every), p.GetValue(force), Path.Combine(dir, "val.txt"));
            source.Save(dir);
            Console.WriteLine($"{report.Documents} documents: {report.TrainTokens} training and {report.ValidationTokens} validation tokens in {dir} (vocabulary {tok.VocabSize}, BOS {info.BosId})");
            return 0;
        });
        return cmd;
    }

    private static Command TrainCommand(string name, string description)
    {
        bool qat = name == "qat";
        var data = new Option<string>("--data") { Description = "Directory made by `paretoq-train data`",
            Required = true };
        var output = new Option<string>("--output",
            "-o") { Description = "Checkpoint to write (metrics go beside it as .jsonl)", Required = true };
        var model = new Option<string>("--model") { Description = "Model size: tiny or mobilellm-7m",
            DefaultValueFactory = _ => "tiny" };
        model.AcceptOnlyFromAmong(Presets);
        var from = new Option<string>("--from") { Description = "The full-precision checkpoint to start from",
            Required = qat };
        var bits = new Option<string>("--bits") { Description = "ParetoQ grid: 1, 1.58, 2, 3 or 4 (or binary, " +
            "ternary, q2_seq, q3_row, q4_row)", Required = qat };
        bits.AcceptOnlyFromAmong(WeightFormats.OptionNames(WeightFormats.IsParetoQ));
        var steps = new Option<int>("--steps") { Description = "Optimizer steps", Required = true };
        var seq = new Option<int>("--seq") { Description = "Tokens per training sequence", DefaultValueFactory = _
            => 128 };
        var batch = new Option<int>("--batch") { Description = "Sequences per step (gradient accumulation)",
            DefaultValueFactory = _ => 8 };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => qat ? 2e-4
            : 3e-3 };
        var minLr = new Option<double>("--min-lr") { Description = "Learning rate at the end of the cosine",
            DefaultValueFactory = _ => qat ? 0 : 3e-4 };
        var warmup = new Option<int>("--warmup") { Description = "Linear warmup steps", DefaultValueFactory = _ => qat
            ? 0 : 20 };
        var clip = new Option<double>("--clip") { Description = "Gradient-norm clipping; 0 = off",
            DefaultValueFactory = _ => 1.0 };
        var evalEvery = new Option<int>("--eval-every") { Description = "Steps between validation losses",
            DefaultValueFactory = _ => 50 };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "Steps between checkpoints",
            DefaultValueFactory = _ => 100 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the initialisation and of the data order",
            DefaultValueFactory = _ => 1 };
        var resume = new Option<bool>("--resume") { Description = "Continue the checkpoint at --output" };
        var distill = new Option<float>("--distill") { Description = "Share of the loss that is KL divergence to the --from model's logits (knowledge distillation), 0..1", DefaultValueFactory = _ => 0f };
        var force = new Option<bool>("--force") { Description = "Replace an existing checkpoint and metrics" };
        var cmd = new Command(name, description) { data, output, steps, seq, batch, lr, minLr, warmup, clip, evalEvery,
            checkpointEvery, seed, resume, force };
        if (qat) { cmd.Options.Add(from); cmd.Options.Add(bits); cmd.Options.Add(distill); }
        else cmd.Options.Add(model);
        cmd.SetAction(p =>
        {
            string ckpt = p.GetValue(output)!, metrics = Path.ChangeExtension(ckpt, ".jsonl"), dir = p.GetValue(data)!;
            TrainingState state;
            if (p.GetValue(resume))
            {
                state = Checkpoint.Load(ckpt);
                int before = state.Optimizer.Settings.TotalSteps;
                if (p.GetValue(steps) != before)
                {
                    state.Optimizer.Reschedule(p.GetValue(steps));
                    Console.WriteLine($"the cosine schedule now runs over {p.GetValue(steps)} steps (was {before})");
                }
            }
            else
            {
                if (!p.GetValue(force) && (File.Exists(ckpt) || File.Exists(metrics)))
                    throw new IOException($"{ckpt} or its metrics already exist (use --resume to continue, --force to start over)");
                File.Delete(metrics);
                var settings = new AdamWSettings
                {
                    LearningRate = p.GetValue(lr), MinLearningRate = p.GetValue(minLr),
                        WarmupSteps = p.GetValue(warmup),
                    TotalSteps = p.GetValue(steps), ClipNorm = p.GetValue(clip),
                };
                var run = new Dictionary<string,
                    string> { ["phase"] = name, ["data"] = Path.GetFullPath(dir),
                    ["seed"] = p.GetValue(seed).ToString(CultureInfo.InvariantCulture) };
                TransformerModel<float> m;
                if (qat)
                {
                    var pretrained = Checkpoint.Load(p.GetValue(from)!);
                    if (pretrained.Model.Projections is not null) throw new ArgumentException($"{p.GetValue(from)} is already a QAT checkpoint; start from a full-precision one");
                    m = pretrained.Model.WithProjections(WeightFormats.ParseOption(p.GetValue(bits)!));
                    run["from"] = Path.GetFullPath(p.GetValue(from)!);
                    run["bits"] = p.GetValue(bits)!;
                    run["distill"] = p.GetValue(distill).ToString(CultureInfo.InvariantCulture);
                }
                else
                {
                    int vocab = TrainingTokenizer.FromData(dir).Tokenizer.VocabSize;
                    m = new TransformerModel<float>(Preset(p.GetValue(model)!, vocab));
                    m.InitializeRandom(p.GetValue(seed));
                    run["model"] = p.GetValue(model)!;
                }
                state = new TrainingState(m, new AdamW(m, settings), Pcg32.FromSeed(p.GetValue(seed) + 1).State, run);
            }
            int vocabSize = state.Model.Config.VocabSize;
            int[] train = TokenData.Read(Path.Combine(dir, "train.tokens"), vocabSize),
                validation = TokenData.Read(Path.Combine(dir, "val.tokens"), vocabSize);
            // Distillation's teacher is the full-precision checkpoint QAT started from (named in the run, so --resume
            // finds it).
            float distillWeight = state.Run.TryGetValue("distill", out var w)
                ? float.Parse(w, CultureInfo.InvariantCulture) : 0f;
            var teacher = distillWeight > 0 ? Checkpoint.Load(state.Run["from"]).Model : null;
            var loop = new LoopSettings
            {
                Teacher = teacher, DistillWeight = distillWeight,
                Steps = p.GetValue(steps), SequenceLength = p.GetValue(seq), SequencesPerStep = p.GetValue(batch),
                EvaluateEvery = p.GetValue(evalEvery), CheckpointEvery = p.GetValue(checkpointEvery),
                    CheckpointPath = ckpt, MetricsPath = metrics,
            };
            var c = state.Model.Config;
            long nonEmbedding = state.Model.Slots.Where(s
                => s.Spec.Role is not (TensorRole.Embedding or TensorRole.Head)).Sum(s => (long)s.Length);
            Console.WriteLine($"{name}: {c.NumLayers} layers, dim {c.HiddenSize}, {nonEmbedding / 1e6:F2}M non-embedding parameters, " +
                $"{(state.Model.Projections is { } g ? $"projections {WeightFormats.Name(g)}" : "full precision")}; {train.Length} training tokens; " +
                $"step {state.Optimizer.Step} → {loop.Steps}");
            StepReport? last = null;
            using var cancel = new CancellationTokenSource();
            Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
            TrainingLoop.Run(state, train, validation, loop, r =>
            {
                last = r;
                double rate = r.Tokens / Math.Max(r.Seconds, 1e-9),
                    eta = (r.Steps - r.Step) * (double)loop.SequenceLength * loop.SequencesPerStep / Math.Max(rate,
                    1e-9);
                string line = string.Create(CultureInfo.InvariantCulture,
                    $"step {r.Step}/{r.Steps} loss {r.Loss:F4}{(r.ValidationLoss is { } v ? $" val {v:F4}" : "")} lr {r.LearningRate:G3} |g| {r.GradientNorm:F2} {rate:F0} tok/s ETA {TimeSpan.FromSeconds(eta):hh\\:mm\\:ss}");
                // The progress line rewrites itself; a line with a validation loss stays on screen.
                if (!Console.IsErrorRedirected)
                    Console.Error.Write(r.ValidationLoss is null ? $"\r{line,-110}" : $"\r{line,-110}\n");
                else if (r.ValidationLoss is not null) Console.Error.WriteLine(line);
            }, cancel.Token);
            if (!Console.IsErrorRedirected) Console.Error.WriteLine();
            if (last is { } end)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{(cancel.IsCancellationRequested ? "stopped" : "done")} at step {end.Step}: loss {end.Loss:F4}{(end.ValidationLoss is { } v ? $", validation {v:F4} (perplexity {Math.Exp(v):F1})" : "")}; checkpoint {ckpt}, metrics {metrics}"));
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// Training text sampled from a model (LLM-QAT's data-free route: the full-precision teacher writes the text its
    /// quantized student trains on). JSON Lines, one {"text": ...} per document, so each keeps its own line breaks and
    /// the student learns what follows them.
    /// </summary>
    private static Command SampleCommand()
    {
        var model = new Option<string>("--model", "-m") { Description = "The .pq model to sample from (the teacher)",
            Required = true };
        var output = new Option<string>("--output", "-o")
        {
            Description = "The .jsonl file to write: one {\"text\": ...} line per document, as `data --text` reads it",
            Required = true,
        };
        var documents = new Option<int>("--documents") { Description = "How many documents", Required = true };
        documents.Check(n => { if (n < 1) throw new ArgumentException($"--documents {n} must be at least 1"); });
        var maxTokens = new Option<int>("--max-tokens") { Description = "Longest document in tokens (it also ends at EOS)",
            DefaultValueFactory = _ => 256 };
        maxTokens.Check(n => { if (n < 1) throw new ArgumentException($"--max-tokens {n} must be at least 1"); });
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature (top-k, top-p and " +
            "min-p are off, so the text follows the model's own distribution at 1)", DefaultValueFactory = _ => 1f };
        temperature.Check(t => new SamplerOptions { Temperature = t }.Validate());
        var seed = new Option<ulong>("--seed") { Description = "Random seed; the same seed gives the same text",
            DefaultValueFactory = _ => 1 };
        var force = new Option<bool>("--force") { Description = "Replace the output file" };
        var cmd = new Command("sample", "Write training text sampled from a model (data-free QAT)")
        {
            model, output, documents, maxTokens, temperature, seed, force,
        };
        cmd.SetAction(p =>
        {
            string path = p.GetValue(output)!;
            if (!path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
                throw new UsageException($"--output {path} must end in .jsonl: sampled documents keep their line " +
                    "breaks, one JSON object per document");
            if (!p.GetValue(force) && File.Exists(path)) throw new OutputExistsException(path);
            using var loaded = LanguageModel.Load(p.GetValue(model)!);
            var tokenizer = Tokenizers.FromFile(loaded.File, loaded.Config.VocabSize);
            if (tokenizer.BosId < 0) throw new ArgumentException($"{p.GetValue(model)} has no BOS token to start documents from");
            int context = Math.Min(loaded.Config.MaxPositionEmbeddings, p.GetValue(maxTokens) + 1);
            using var session = new Session(loaded, new SessionOptions { ContextLength = context });
            var generator = new Generator(session, tokenizer);
            long tokens = 0;
            var lines = new List<string>();
            for (int d = 0; d < p.GetValue(documents); d++)
            {
                session.Reset();
                var result = generator.Generate([tokenizer.BosId], new GenerationOptions
                {
                    MaxTokens = context - 1, EosIds = loaded.File.Tokenizer.EosIds,
                    Sampler = new SamplerOptions { Temperature = p.GetValue(temperature), TopK = 0, TopP = 1, MinP = 0,
                        Seed = p.GetValue(seed) + (ulong)d },
                }, _ => { });
                tokens += result.GeneratedTokens;
                // The whole-sequence decode, not the stream: it drops SentencePiece's dummy-prefix space (" Once"),
                // which `data` would otherwise encode as one more token before the story.
                lines.Add(TrainingText.JsonLine(tokenizer.Decode([.. result.Tokens])));
            }
            AtomicFile.Write(path, p.GetValue(force), fs =>
            {
                using var writer = new StreamWriter(fs, new UTF8Encoding(false), leaveOpen: true);
                foreach (string line in lines) writer.WriteLine(line);
            });
            Console.WriteLine($"sampled {lines.Count} documents, {tokens} tokens, from {p.GetValue(model)} -> {path}");
            return 0;
        });
        return cmd;
    }

    private static Command ChartCommand()
    {
        var metrics = new Option<string[]>("--metrics") { Description = "Metrics files (.jsonl) written by pretrain or qat", AllowMultipleArgumentsPerToken = true };
        var points = new Option<string?>("--points") { Description = "Instead of metrics: a CSV of series,x,y lines (header first), one line and markers per series" };
        var output = new Option<string>("--output", "-o") { Description = "The PNG to write", Required = true };
        var title = new Option<string>("--title") { Description = "Chart title", DefaultValueFactory = _
            => "training loss (dots: validation)" };
        var xLabel = new Option<string>("--x-label") { Description = "Horizontal axis label", DefaultValueFactory = _
            => "step" };
        var yLabel = new Option<string>("--y-label") { Description = "Vertical axis label", DefaultValueFactory = _
            => "loss (nats/token)" };
        var logY = new Option<bool>("--log-y")
        {
            Description = "Logarithmic vertical axis (for values spanning decades)",
        };
        var cmd = new Command("chart",
            "Plot loss curves from metrics files, or any series from a CSV, as a PNG") { metrics, points, output, title,
            xLabel, yLabel, logY };
        cmd.SetAction(p =>
        {
            var series = new List<ChartSeries>();
            if (p.GetValue(points) is { } csv)
            {
                var rows = File.ReadAllLines(csv).Skip(1).Where(l => l.Trim().Length > 0).Select((l, i) =>
                {
                    string[] f = l.Split(',');
                    if (f.Length != 3 || !double.TryParse(f[1], CultureInfo.InvariantCulture, out double x)
                        || !double.TryParse(f[2], CultureInfo.InvariantCulture, out double y))
                        throw new InvalidDataException($"{csv}:{i + 2}: expected series,x,y");
                    return (Series: f[0].Trim(), X: x, Y: y);
                }).ToList();
                foreach (var group in rows.GroupBy(r => r.Series))
                {
                    var pts = group.Select(r => (r.X, r.Y)).OrderBy(q => q.X).ToList();
                    series.Add(new ChartSeries(group.Key, pts));
                    series.Add(new ChartSeries("", pts, Markers: true));
                }
            }
            foreach (string file in p.GetValue(metrics) ?? [])
            {
                var lines = TrainingLoop.ReadMetrics(file);
                var train = lines.Select(l => ((double)l.Step, l.Loss)).ToList();
                var validation = lines.Where(l => l.ValidationLoss is not null).Select(l
                    => ((double)l.Step, l.ValidationLoss!.Value)).ToList();
                string name = Path.GetFileNameWithoutExtension(file);
                // One colour per run: the training loss as its line, the validation losses as dots on it.
                series.Add(new ChartSeries(name, train));
                if (validation.Count > 0) series.Add(new ChartSeries("", validation, Markers: true));
            }
            if (series.Count == 0) throw new UsageException("give --metrics files or --points");
            Chart.Write(p.GetValue(output)!, p.GetValue(title)!, p.GetValue(xLabel)!, p.GetValue(yLabel)!, series,
                logY: p.GetValue(logY));
            Console.WriteLine($"wrote {p.GetValue(output)} ({series.Count} series)");
            return 0;
        });
        return cmd;
    }

    private static Command ImportCommand()
    {
        var model = new Option<string>("--model",
            "-m") { Description = "A .pq file (quantized tensors are dequantized), a Hugging Face checkpoint directory, " +
            "a GGUF file or a llama2.c checkpoint (with --tokenizer)", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "With a llama2.c checkpoint: its tokenizer.bin" };
        var output = new Option<string>("--output",
            "-o") { Description = "The full-precision checkpoint to write (qat --from takes it)", Required = true };
        var force = new Option<bool>("--force") { Description = "Replace an existing checkpoint" };
        var cmd = new Command("import", "Make a full-precision checkpoint from an existing model, to QAT from") { model,
            tokenizer, output, force };
        cmd.SetAction(p =>
        {
            string source = p.GetValue(model)!, ckpt = p.GetValue(output)!;
            if (!p.GetValue(force)
                && File.Exists(ckpt)) throw new OutputExistsException(ckpt);
            var imported = ModelImport.FromModel(source, p.GetValue(tokenizer));
            var run = new Dictionary<string, string> { ["phase"] = "import", ["source"] = Path.GetFullPath(source) };
            Checkpoint.Save(ckpt, imported, new AdamW(imported, new AdamWSettings()), Pcg32.FromSeed(1).State, run);
            var c = imported.Config;
            Console.WriteLine($"imported {source}: {c.NumLayers} layers, dim {c.HiddenSize}, vocabulary {c.VocabSize} -> {ckpt}");
            return 0;
        });
        return cmd;
    }

    private static Command ExportCommand()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "A checkpoint of pretrain or qat",
            Required = true };
        var output = new Option<string>("--output", "-o") { Description = "The .pq file to write", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.json or .pq model whose tokenizer to embed (default: the one beside the run's token data)" };
        var head = new Option<string>("--head") { Description = "Embedding/head format: i8_row, q4_g32, f16, bf16, f32",
            DefaultValueFactory = _ => "i8_row" };
        head.AcceptOnlyFromAmong([.. WeightFormats.HeadFormats.Select(WeightFormats.Name)]);
        var ptq = new Option<string?>("--ptq") { Description = "Round-to-nearest quantize a full-precision checkpoint to this grid (1, 1.58, 2, 3, 4): the no-training baseline" };
        ptq.AcceptOnlyFromAmong(WeightFormats.OptionNames(WeightFormats.IsParetoQ));
        var force = new Option<bool>("--force") { Description = "Replace the output file" };
        var cmd = new Command("export", "Write a checkpoint as a .pq model the runtime runs") { checkpoint, output,
            tokenizer, head, ptq, force };
        cmd.SetAction(p =>
        {
            var state = Checkpoint.Load(p.GetValue(checkpoint)!);
            var model = state.Model;
            if (p.GetValue(ptq) is { } bits)
            {
                if (model.Projections is not null) throw new ArgumentException("--ptq quantizes a full-precision checkpoint; this one is already QAT");
                model = model.WithProjections(WeightFormats.ParseOption(bits));
            }
            var trainingTokenizer = p.GetValue(tokenizer) is { } given ? TrainingTokenizer.Load(given)
                : state.Run.TryGetValue("data", out var d) ? TrainingTokenizer.FromData(d)
                : throw new UsageException("the checkpoint does not name its data directory; give --tokenizer");
            var (info, bytes) = (trainingTokenizer.Info, trainingTokenizer.Bytes);
            var headFormat = WeightFormats.ParseOption(p.GetValue(head)!);
            string bitsName = model.Projections is { } g
                ? WeightFormats.NominalBits(g).ToString(CultureInfo.InvariantCulture) : "32";
            var settings = state.Run.ToDictionary(k => k.Key, k => k.Value);
            settings["step"] = state.Optimizer.Step.ToString(CultureInfo.InvariantCulture);
            if (p.GetValue(ptq) is { } ptqBits) settings["ptq"] = ptqBits;
            PqExport.Write(model, p.GetValue(output)!, info, bytes,
                new PqProvenance(Path.GetFullPath(p.GetValue(checkpoint)!), bitsName, "paretoq-train", settings),
                    headFormat, p.GetValue(force));
            Console.WriteLine($"exported {p.GetValue(checkpoint)} (step {state.Optimizer.Step}{(p.GetValue(ptq) is { } b ? $", round-to-nearest {WeightFormats.NominalBits(WeightFormats.ParseOption(b)).ToString(CultureInfo.InvariantCulture)}-bit" : "")}) -> {p.GetValue(output)}: {new FileInfo(p.GetValue(output)!).Length / 1e6:F2} MB");
            return 0;
        });
        return cmd;
    }
}
