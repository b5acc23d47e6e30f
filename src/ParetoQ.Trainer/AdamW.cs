namespace ParetoQ.Trainer;

/// <summary>Optimizer settings; ParetoQ's QAT recipe is lr 2e-5 (1e-5 at 3/4 bits), no weight decay, cosine, no
/// warmup.</summary>
public sealed record AdamWSettings
{
    public double LearningRate { get; init; } = 1e-3;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>Decoupled decay of matrices (not norms, not α).</summary>
    public double WeightDecay { get; init; }
    /// <summary>Global L2 norm the gradients are scaled down to when above; 0 = no clipping.</summary>
    public double ClipNorm { get; init; } = 1.0;
    public int WarmupSteps { get; init; }
    /// <summary>Steps of the cosine schedule; the rate falls from LearningRate to MinLearningRate over them.</summary>
    public int TotalSteps { get; init; } = 1;
    public double MinLearningRate { get; init; }

    public void Validate()
    {
        if (!(LearningRate > 0) || !(MinLearningRate >= 0)
            || MinLearningRate > LearningRate) throw new ArgumentException($"learning rates {LearningRate} → {MinLearningRate} must satisfy lr > 0 and 0 ≤ min ≤ lr");
        if (!(Beta1 is >= 0 and < 1)
            || !(Beta2 is >= 0 and < 1)) throw new ArgumentException($"betas {Beta1}, {Beta2} must be in [0, 1)");
        if (!(Epsilon > 0) || !(WeightDecay >= 0)
            || !(ClipNorm >= 0)) throw new ArgumentException("epsilon must be > 0, weight decay and clip norm ≥ 0");
        if (TotalSteps < 1 || WarmupSteps < 0
            || WarmupSteps > TotalSteps) throw new ArgumentException($"steps: total {TotalSteps} ≥ 1 and 0 ≤ warmup {WarmupSteps} ≤ total");
    }

    /// <summary>Linear warmup, then cosine from LearningRate to MinLearningRate; step counts from 0.</summary>
    public double RateAt(int step)
    {
        if (step < WarmupSteps) return LearningRate * (step + 1) / WarmupSteps;
        double progress = Math.Min(1.0, (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps));
        return MinLearningRate + 0.5 * (LearningRate - MinLearningRate) * (1 + Math.Cos(Math.PI * progress));
    }
}

/// <summary>
/// AdamW over the model's flat parameter buffer and its α, with global-norm clipping. Its moments and step count are
/// part of a checkpoint, so a resumed run continues exactly.
/// </summary>
public sealed class AdamW
{
    public AdamWSettings Settings { get; private set; }
    public int Step { get; set; }

    /// <summary>
    /// Stretches the cosine over <paramref name="totalSteps"/> when a resumed run is given more (or fewer) steps, so
    /// the rate keeps falling to the new end instead of sitting at the minimum past the old one.
    /// </summary>
    public void Reschedule(int totalSteps)
    {
        if (totalSteps < Step) throw new ArgumentException($"--steps {totalSteps} is below the {Step} steps already taken");
        var settings = Settings with { TotalSteps = Math.Max(totalSteps, Settings.WarmupSteps) };
        settings.Validate();
        Settings = settings;
    }
    public float[] M { get; }
    public float[] V { get; }
    public float[] AlphaM { get; }
    public float[] AlphaV { get; }
    private readonly bool[] _decays; // per parameter: matrices decay, norms do not

    public AdamW(TransformerModel<float> model, AdamWSettings settings)
    {
        settings.Validate();
        Settings = settings;
        M = new float[model.Parameters.Length];
        V = new float[model.Parameters.Length];
        AlphaM = new float[model.Alphas.Length];
        AlphaV = new float[model.Alphas.Length];
        _decays = new bool[model.Parameters.Length];
        foreach (var slot in model.Slots)
            if (!slot.Spec.IsNorm) _decays.AsSpan(slot.Offset, slot.Length).Fill(true);
    }

    /// <summary>Applies one update from the accumulated gradients; returns the gradient norm before clipping and the
    /// rate used.</summary>
    public (double GradientNorm, double LearningRate) Update(TransformerModel<float> model)
    {
        double squares = 0;
        foreach (float g in model.Gradients) squares += (double)g * g;
        foreach (float g in model.AlphaGradients) squares += (double)g * g;
        double norm = Math.Sqrt(squares);
        if (!double.IsFinite(norm)) throw new ArithmeticException($"the gradient norm is {norm} at step {Step}: training diverged (lower the learning rate)");
        double clip = Settings.ClipNorm > 0 && norm > Settings.ClipNorm ? Settings.ClipNorm / norm : 1;
        double lr = Settings.RateAt(Step);
        Step++;
        double c1 = 1 - Math.Pow(Settings.Beta1, Step), c2 = 1 - Math.Pow(Settings.Beta2, Step);
        Apply(model.Parameters, model.Gradients, M, V, _decays, clip, lr, c1, c2);
        Apply(model.Alphas, model.AlphaGradients, AlphaM, AlphaV, null, clip, lr, c1, c2);
        return (norm, lr);
    }

    private void Apply(float[] p, float[] g, float[] m, float[] v, bool[]? decays, double clip, double lr, double c1,
        double c2)
    {
        float b1 = (float)Settings.Beta1, b2 = (float)Settings.Beta2;
        for (int i = 0; i < p.Length; i++)
        {
            float grad = (float)(g[i] * clip);
            m[i] = b1 * m[i] + (1 - b1) * grad;
            v[i] = b2 * v[i] + (1 - b2) * grad * grad;
            double update = m[i] / c1 / (Math.Sqrt(v[i] / c2) + Settings.Epsilon);
            if (decays is not null && decays[i]) update += Settings.WeightDecay * p[i];
            p[i] -= (float)(lr * update);
        }
    }
}
