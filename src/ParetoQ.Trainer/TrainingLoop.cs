using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace ParetoQ.Trainer;

public sealed record LoopSettings
{
    /// <summary>Optimizer steps of the whole run (a resumed run continues up to it).</summary>
    public required int Steps { get; init; }
    public int SequenceLength { get; init; } = 256;
    /// <summary>Sequences whose gradients are accumulated into one step.</summary>
    public int SequencesPerStep { get; init; } = 8;
    public int EvaluateEvery { get; init; } = 100;
    public int EvaluationWindows { get; init; } = 32;
    public int CheckpointEvery { get; init; } = 200;
    public string? CheckpointPath { get; init; }
    /// <summary>JSON lines, one per step: step, loss, lr, grad_norm, tokens, seconds, and val_loss when
    /// evaluated.</summary>
    public string? MetricsPath { get; init; }
    /// <summary>A full-precision teacher for knowledge distillation (same vocabulary), and the KL share of the
    /// loss.</summary>
    public TransformerModel<float>? Teacher { get; init; }
    public float DistillWeight { get; init; }

    public void Validate(int contextLength)
    {
        if (Steps < 1 || SequencesPerStep < 1 || EvaluateEvery < 1 || EvaluationWindows < 1 || CheckpointEvery < 1)
            throw new ArgumentException("steps, sequences per step, evaluation and checkpoint intervals and windows must all be ≥ 1");
        if (SequenceLength < 2
            || SequenceLength > contextLength) throw new ArgumentException($"sequence length {SequenceLength} must be within 2..{contextLength}");
        if (DistillWeight is < 0 or > 1
            || (DistillWeight > 0
            && Teacher is null)) throw new ArgumentException($"distillation weight {DistillWeight} needs a teacher and must be within 0..1");
    }
}

public sealed record StepReport(int Step, int Steps, double Loss, double LearningRate, double GradientNorm,
    double? ValidationLoss, long Tokens, double Seconds);

/// <summary>
/// The training loop: each step runs <see cref="LoopSettings.SequencesPerStep"/> random windows as one batch, takes
/// one AdamW step, logs a metrics line, evaluates on fixed validation windows and checkpoints on schedule. Nothing is
/// allocated per step once the first one has run, apart from a validation's two window buffers. Cancelling stops
/// after the current step and checkpoints it.
/// </summary>
public static class TrainingLoop
{
    /// <summary>Mean loss over <paramref name="windows"/> evenly spaced windows of the validation tokens (always the
    /// same ones), run <paramref name="batch"/> windows at a time (the training step's shape, so its activations
    /// serve).</summary>
    public static double ValidationLoss(TransformerModel<float> model, int[] tokens, int length, int windows,
        int batch = 1)
    {
        int room = tokens.Length - length - 1;
        if (room < 0) throw new ArgumentException($"{tokens.Length} validation tokens hold no window of {length + 1}");
        var inputs = new int[Math.Min(batch, windows) * length];
        var targets = new int[inputs.Length];
        double sum = 0;
        for (int first = 0; first < windows; first += batch)
        {
            int count = Math.Min(batch, windows - first);
            for (int i = 0; i < count; i++)
                CopyWindow(tokens, (int)((long)room * (first + i) / Math.Max(1, windows - 1)), length, i, inputs,
                    targets);
            // every window's targets are all scored, so the batch's mean is the mean of its windows' means
            sum += model.Forward(inputs.AsSpan(0, count * length), targets.AsSpan(0, count * length),
                sequences: count) * count;
        }
        return sum / windows;
    }

    // Window tokens[start, start + length) into slot `slot` of a batch's inputs, and its next tokens into targets.
    private static void CopyWindow(int[] tokens, int start, int length, int slot, int[] inputs, int[] targets)
    {
        tokens.AsSpan(start, length).CopyTo(inputs.AsSpan(slot * length));
        tokens.AsSpan(start + 1, length).CopyTo(targets.AsSpan(slot * length));
    }

    public static void Run(TrainingState state, int[] train, int[] validation, LoopSettings settings,
        Action<StepReport>? onStep = null, CancellationToken cancellation = default)
    {
        var (model, optimizer) = (state.Model, state.Optimizer);
        settings.Validate(model.Config.MaxPositionEmbeddings);
        var sampler = new WindowSampler(train, settings.SequenceLength, state.SamplerState);
        // A resumed run carries on the metrics of the checkpointed steps: lines logged after the checkpoint are dropped
        // (those steps run again), and tokens and seconds continue from the checkpoint.
        double secondsBefore = settings.MetricsPath is { } log ? KeepMetricsUpTo(log, optimizer.Step) : 0;
        var clock = Stopwatch.StartNew();
        long tokens = (long)optimizer.Step * settings.SequencesPerStep * settings.SequenceLength;
        int sequences = settings.SequencesPerStep, length = settings.SequenceLength;
        var inputs = new int[sequences * length];
        var targets = new int[sequences * length];
        var teacherLogits = settings.Teacher is null ? null : new float[inputs.Length * model.Config.VocabSize];
        if (settings.Teacher is { } t
            && t.Config.VocabSize != model.Config.VocabSize) throw new ArgumentException("the teacher's vocabulary differs from the model's");
        using var metrics = settings.MetricsPath is null ? null
            : new StreamWriter(settings.MetricsPath, append: true, new UTF8Encoding(false));
        while (optimizer.Step < settings.Steps && !cancellation.IsCancellationRequested)
        {
            model.ZeroGradients();
            // The step's windows go through the model as one batch: every matmul sees all of their tokens.
            for (int s = 0; s < sequences; s++) CopyWindow(train, sampler.Next(), length, s, inputs, targets);
            settings.Teacher?.Forward(inputs, targets, teacherLogits, sequences: sequences);
            double loss = model.Forward(inputs, targets, default, teacherLogits, settings.DistillWeight, sequences);
            model.Backward(1f);
            tokens += inputs.Length;
            var (norm, lr) = optimizer.Update(model);
            int step = optimizer.Step;
            double? validationLoss = step % settings.EvaluateEvery == 0 || step == settings.Steps
                ? ValidationLoss(model, validation, settings.SequenceLength, settings.EvaluationWindows, sequences)
                : null;
            if (settings.CheckpointPath is { } path && (step % settings.CheckpointEvery == 0 || step == settings.Steps))
                Checkpoint.Save(path, model, optimizer, sampler.State, state.Run);
            var report = new StepReport(step, settings.Steps, loss, lr, norm, validationLoss, tokens,
                secondsBefore + clock.Elapsed.TotalSeconds);
            metrics?.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{{\"step\":{step},\"loss\":{loss:R},\"lr\":{lr:R},\"grad_norm\":{norm:R},\"tokens\":{tokens},\"seconds\":{report.Seconds:F3}{(validationLoss is { } v ? $",\"val_loss\":{v:R}" : "")}}}"));
            metrics?.Flush();
            onStep?.Invoke(report);
        }
        // Stopped early (Ctrl+C): keep the last completed step.
        if (cancellation.IsCancellationRequested && settings.CheckpointPath is { } final)
            Checkpoint.Save(final, model, optimizer, sampler.State, state.Run);
    }

    /// <summary>The lines of a metrics file (written by <see cref="Run"/>), with the file and line named when one is
    /// malformed.</summary>
    public static List<MetricsLine> ReadMetrics(string path)
    {
        var lines = new List<MetricsLine>();
        foreach (string text in File.ReadLines(path))
        {
            try
            {
                using var doc = System.Text.Json.JsonDocument.Parse(text);
                var root = doc.RootElement;
                lines.Add(new MetricsLine(root.GetProperty("step").GetInt32(), root.GetProperty("loss").GetDouble(),
                    root.TryGetProperty("val_loss", out var v) ? v.GetDouble() : null,
                        root.GetProperty("seconds").GetDouble(), text));
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or KeyNotFoundException
                or InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"{path}:{lines.Count + 1}: not a metrics line ({e.Message})");
            }
        }
        return lines;
    }

    /// <summary>Drops metrics lines of steps after <paramref name="step"/>; returns the seconds logged at that step (0
    /// if none).</summary>
    private static double KeepMetricsUpTo(string path, int step)
    {
        if (!File.Exists(path)) return 0;
        var lines = ReadMetrics(path);
        var kept = lines.TakeWhile(l => l.Step <= step).ToList();
        if (kept.Count < lines.Count) File.WriteAllLines(path, kept.Select(l => l.Text), new UTF8Encoding(false));
        return kept.Count > 0 ? kept[^1].Seconds : 0;
    }
}

/// <summary>One step's line of a metrics file, and its text.</summary>
public sealed record MetricsLine(int Step, double Loss, double? ValidationLoss, double Seconds, string Text);
