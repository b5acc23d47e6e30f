using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Bench;

/// <summary>
/// <c>paretoq-bench model</c>: prefill and decode speed of whole models. For each prompt length P a fresh session
/// prefills P random tokens (timed), then decodes tokens one by one at context ≈ P (timed). Models are generated once
/// into a cache folder and memory-mapped like any .pq.
/// </summary>
public static class ModelBench
{
    /// <summary>The matrix: MobileLLM-ParetoQ-1B at every ParetoQ width, MobileLLM-Pro-1B at 2-bit and
    /// int4-g32.</summary>
    public static readonly (string Preset, WeightFormat Projections)[] DefaultModels =
    [
        ("mobilellm-1b", WeightFormat.Binary), ("mobilellm-1b", WeightFormat.Ternary),
            ("mobilellm-1b", WeightFormat.Q2Seq),
        ("mobilellm-1b", WeightFormat.Q3Row), ("mobilellm-1b", WeightFormat.Q4Row),
        ("mobilellm-pro-1b", WeightFormat.Q2Seq), ("mobilellm-pro-1b", WeightFormat.Q4G32),
    ];

    public static string EnsureModel(string dir, string preset, WeightFormat projections, WeightFormat head,
        string? llamaTokenizerJson, TextWriter progress)
    {
        Directory.CreateDirectory(dir);
        string vocabulary = llamaTokenizerJson is null ? ""
            : $"-tok-{System.IO.Hashing.XxHash3.HashToUInt64(File.ReadAllBytes(llamaTokenizerJson)):x16}";
        string path = Path.Combine(dir,
            $"{preset}-{WeightFormats.Name(projections)}-head-{WeightFormats.Name(head)}{vocabulary}.v2.pq");
        if (!File.Exists(path))
        {
            progress.WriteLine($"generating {path} ...");
            RandomModels.Write(path, RandomModels.Preset(preset), projections, head, seed: 1, llamaTokenizerJson);
        }
        return path;
    }

    /// <summary>
    /// Prompt and decode lengths that fit a context of <paramref name="context"/> positions: a prompt that leaves no
    /// room for the decoded tokens is shortened to leave it (decode to half the context where it alone would not fit),
    /// repeated lengths are dropped, and each change is described in <paramref name="notes"/>.
    /// </summary>
    public static (List<int> Prompts, int Decode) FitContext(IReadOnlyList<int> prompts, int decode, int context,
        List<string> notes)
    {
        int fitDecode = Math.Min(decode, Math.Max(1, context / 2));
        if (fitDecode != decode)
            notes.Add($"decode {decode} shortened to {fitDecode}: the context is {context} positions");
        var fitted = new List<int>();
        foreach (int p in prompts)
        {
            int fit = Math.Min(p, context - fitDecode);
            if (fit != p) notes.Add($"prompt {p} shortened to {fit}: the context is {context} positions and " +
                $"{fitDecode} are decoded");
            if (!fitted.Contains(fit)) fitted.Add(fit);
        }
        return (fitted, fitDecode);
    }

    /// <summary>
    /// One row per prompt length: prefill and decode tokens/s as mean ± sd over <paramref name="repetitions"/> runs,
    /// each a fresh prefill followed by the decode. Rows go into the report as soon as they are measured, so a later
    /// failure still leaves them to print.
    /// </summary>
    public static void Run(BenchReport report, string path, string label, IComputeBackend backend,
        IReadOnlyList<int> prompts, int decodeTokens, int repetitions, double? bandwidthGBs, TextWriter progress,
        bool profile = false, WeightMemory weights = WeightMemory.Auto)
    {
        // --profile: time every backend operation of the prefill and of the decode steps, and print where a token's
        // time goes. An accelerator runs its kernels asynchronously, so there the time lands on the operation that
        // waits (copy_to_host).
        var profiler = profile ? new ProfilingBackend(backend) : null;
        using var model = LanguageModel.Load(path, profiler ?? backend, weights);
        var c = model.Config;
        var rng = new Random(7);
        long weightBytes = model.File.Tensors.Sum(t => t.Length);
        // Decode reads every weight once per token except the embedding table (one row); a tied head reads it whole.
        long bytesPerToken = weightBytes - model.Embedding.Tensor.Length + (c.TieWordEmbeddings
            ? model.Head.Tensor.Length : 0);
        var notes = new List<string>();
        (var fitted, decodeTokens) = FitContext(prompts, decodeTokens, c.MaxPositionEmbeddings, notes);
        foreach (string note in notes) progress.WriteLine($"note: {label}: {note}");
        foreach (int p in fitted)
        {
            using var session = new Session(model,
                new SessionOptions { ContextLength = Math.Min(p + decodeTokens, c.MaxPositionEmbeddings),
                MaxBatch = Math.Min(p, 512) });
            var prompt = Enumerable.Range(0, p).Select(_ => rng.Next(c.VocabSize)).ToArray();
            // Warm-up: touch every page of the map and compile the prefill and decode paths, outside the timing.
            session.Forward(prompt.AsSpan(0, Math.Min(p, 16)));
            var next = new int[1];
            session.Forward(next);
            var prefillRates = new List<double>();
            var decodeRates = new List<double>();
            for (int r = 0; r < repetitions; r++)
            {
                session.Reset();
                profiler?.Clear();
                double prefill = Timing.Seconds(() => session.Forward(prompt));
                prefillRates.Add(p / prefill);
                if (profiler is not null && r == 0)
                    PrintProfile(profiler, $"{label}, prefill of {p}", p, prefill, progress);
                profiler?.Clear();
                double decode = Timing.Seconds(() =>
                {
                    for (int i = 0; i < decodeTokens; i++)
                    {
                        next[0] = rng.Next(c.VocabSize);
                        session.Forward(next);
                    }
                });
                decodeRates.Add(decodeTokens / decode);
                if (profiler is not null && r == 0) PrintProfile(profiler, $"{label}, decode at context {p}",
                    decodeTokens, decode, progress);
                progress.Write('.');
            }
            var decodeSpread = Spread.Of(decodeRates);
            // KV read per decoded token, approximately: the filled fraction of the caches.
            long kvBytes = session.KvCacheBytes * (p + decodeTokens / 2) / Math.Max(1, session.ContextLength);
            var row = new List<(string, object)>
            {
                ("model", label), ("weights_MB", weightBytes / 1e6),
                ("weights", model.File.Memory == WeightMemory.Resident ? "resident" : "mapped"), ("prompt", p),
                ("prefill_tok/s", Spread.Of(prefillRates)),
                ("decode", decodeTokens), ("decode_tok/s", decodeSpread),
                ("read_MB/token", (bytesPerToken + kvBytes) / 1e6),
            };
            if (bandwidthGBs is { } bw)
            {
                double bound = bw * 1e9 / (bytesPerToken + kvBytes);
                row.Add(("roofline_tok/s", bound));
                row.Add(("roofline_frac", decodeSpread.Mean / bound));
            }
            report.Row([.. row]);
        }
        progress.WriteLine();
    }

    private static void PrintProfile(ProfilingBackend profiler, string title, int tokens, double seconds,
        TextWriter output)
    {
        var profile = new BenchReport("profile");
        profile.Fact("profile", title);
        // The empty step: all of a token's work but the matmuls and attention (norms, RoPE, SwiGLU, residual adds,
        // embedding, logits copy), the per-token overhead a fused step would remove.
        double empty = profiler.Totals.Where(t => !t.Operation.StartsWith("matmul", StringComparison.Ordinal)
            && !t.Operation.StartsWith("attention", StringComparison.Ordinal)).Sum(t => t.Seconds);
        profile.Fact("empty_step_ms/token", $"{empty * 1e3 / tokens:F3} ({empty / seconds:P1} of the time)");
        foreach (var (op, s, calls) in profiler.Totals.OrderByDescending(t => t.Seconds))
            profile.Row(("operation", op), ("ms/token", s * 1e3 / tokens), ("share", s / seconds),
                ("calls/token", calls / (double)tokens));
        output.WriteLine();
        profile.Print(json: false, output);
    }
}
