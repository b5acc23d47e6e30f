using System.Numerics;
using ParetoQ.Runtime.Kernels;

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
/// part of a checkpoint, so a resumed run continues exactly. Both passes (the gradient norm, then the update) run in
/// <see cref="Vector{T}"/> over fixed chunks on the GEMM's pool; the norm's chunk sums are added in chunk order, so
/// the result does not depend on the thread count.
/// </summary>
public sealed class AdamW : IParallelJob
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

    private const int ChunkLength = 1 << 16;
    /// <summary>A run of parameters within one tensor (or of α): matrices decay, norms and α do not.</summary>
    private readonly record struct Chunk(bool IsAlpha, int Offset, int Length, bool Decays);
    private readonly Chunk[] _chunks;
    private readonly double[] _chunkSquares;
    // The pass in flight on the pool: the norm when _model's gradients are summed, else the update.
    private TransformerModel<float>? _model;
    private bool _updating;
    private float _clip, _rate, _inverseC1, _inverseC2;

    public AdamW(TransformerModel<float> model, AdamWSettings settings)
    {
        settings.Validate();
        Settings = settings;
        M = new float[model.Parameters.Length];
        V = new float[model.Parameters.Length];
        AlphaM = new float[model.Alphas.Length];
        AlphaV = new float[model.Alphas.Length];
        var chunks = new List<Chunk>();
        void Split(bool isAlpha, int offset, int length, bool decays)
        {
            for (int start = 0; start < length; start += ChunkLength)
                chunks.Add(new Chunk(isAlpha, offset + start, Math.Min(ChunkLength, length - start), decays));
        }
        foreach (var slot in model.Slots) Split(false, slot.Offset, slot.Length, !slot.Spec.IsNorm);
        Split(true, 0, model.Alphas.Length, false);
        _chunks = [.. chunks];
        _chunkSquares = new double[_chunks.Length];
    }

    /// <summary>Applies one update from the accumulated gradients; returns the gradient norm before clipping and the
    /// rate used.</summary>
    public (double GradientNorm, double LearningRate) Update(TransformerModel<float> model)
    {
        if (model.Parameters.Length != M.Length || model.Alphas.Length != AlphaM.Length)
            throw new ArgumentException("this optimizer was built for another model's shape");
        _model = model;
        _updating = false;
        Gemm.Shared.Run(this, _chunks.Length);
        double squares = 0;
        foreach (double chunk in _chunkSquares) squares += chunk;
        double norm = Math.Sqrt(squares);
        if (!double.IsFinite(norm)) throw new ArithmeticException($"the gradient norm is {norm} at step {Step}: training diverged (lower the learning rate)");
        double lr = Settings.RateAt(Step);
        Step++;
        _clip = (float)(Settings.ClipNorm > 0 && norm > Settings.ClipNorm ? Settings.ClipNorm / norm : 1);
        _rate = (float)lr;
        _inverseC1 = (float)(1 / (1 - Math.Pow(Settings.Beta1, Step)));
        _inverseC2 = (float)(1 / (1 - Math.Pow(Settings.Beta2, Step)));
        _updating = true;
        Gemm.Shared.Run(this, _chunks.Length);
        _model = null;
        return (norm, lr);
    }

    public void Execute(int begin, int end, int worker)
    {
        var model = _model!;
        for (int i = begin; i < end; i++)
        {
            var chunk = _chunks[i];
            var (p, g, m, v) = chunk.IsAlpha ? (model.Alphas, model.AlphaGradients, AlphaM, AlphaV)
                : (model.Parameters, model.Gradients, M, V);
            var range = new Range(chunk.Offset, chunk.Offset + chunk.Length);
            if (_updating) Apply(p.AsSpan(range), g.AsSpan(range), m.AsSpan(range), v.AsSpan(range), chunk.Decays);
            else _chunkSquares[i] = SumOfSquares(g.AsSpan(range));
        }
    }

    private static double SumOfSquares(ReadOnlySpan<float> g)
    {
        var sum = Vector<double>.Zero;
        int i = 0;
        for (int width = Vector<float>.Count; i <= g.Length - width; i += width)
        {
            Vector.Widen(new Vector<float>(g[i..]), out var low, out var high);
            sum += low * low + high * high;
        }
        double total = Vector.Sum(sum);
        for (; i < g.Length; i++) total += (double)g[i] * g[i];
        return total;
    }

    // m ← β1·m + (1 − β1)·g, v ← β2·v + (1 − β2)·g², p ← p − lr·(m̂ / (√v̂ + ε) + decay·p), g clipped first.
    private void Apply(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, bool decays)
    {
        float b1 = (float)Settings.Beta1, b2 = (float)Settings.Beta2, eps = (float)Settings.Epsilon;
        float decay = decays ? (float)Settings.WeightDecay : 0, clip = _clip, lr = _rate;
        float c1 = _inverseC1, c2 = _inverseC2;
        int i = 0;
        for (int width = Vector<float>.Count; i <= p.Length - width; i += width)
        {
            var grad = new Vector<float>(g[i..]) * clip;
            var mv = new Vector<float>(b1) * new Vector<float>(m[i..]) + new Vector<float>(1 - b1) * grad;
            var vv = new Vector<float>(b2) * new Vector<float>(v[i..]) + new Vector<float>(1 - b2) * grad * grad;
            var pv = new Vector<float>(p[i..]);
            var update = mv * c1 / (Vector.SquareRoot(vv * c2) + new Vector<float>(eps)) + pv * decay;
            mv.CopyTo(m[i..]);
            vv.CopyTo(v[i..]);
            (pv - update * lr).CopyTo(p[i..]);
        }
        for (; i < p.Length; i++)
        {
            float grad = g[i] * clip;
            m[i] = b1 * m[i] + (1 - b1) * grad;
            v[i] = b2 * v[i] + (1 - b2) * grad * grad;
            p[i] -= lr * (m[i] * c1 / (MathF.Sqrt(v[i] * c2) + eps) + decay * p[i]);
        }
    }
}
