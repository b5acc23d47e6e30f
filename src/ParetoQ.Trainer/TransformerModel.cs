using System.Numerics;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Trainer;

/// <summary>Where one tensor lives in the flat parameter buffer.</summary>
public sealed record ParameterSlot(TensorSpec Spec, int Offset)
{
    public int Length => Spec.Rows * Spec.Cols;
}

/// <summary>
/// The runtime's decoder (<see cref="ModelConfig"/>) as a trainable model: all parameters in one flat buffer in
/// <see cref="ModelTensors.For"/> order (so the optimizer and checkpoints see one array), a forward that keeps the
/// activations of one sequence, and a backward that accumulates into a gradient buffer of the same layout.
/// With <see cref="Projections"/> set (float only), every q/k/v/o/gate/up/down weight goes through ParetoQ's
/// fake-quantizer with its per-row α (<see cref="Alphas"/>), exactly as the exported model computes.
/// </summary>
public sealed class TransformerModel<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public ModelConfig Config { get; }
    public T[] Parameters { get; }
    public T[] Gradients { get; }
    public IReadOnlyList<ParameterSlot> Slots { get; }
    /// <summary>The ParetoQ grid of the projections during QAT; null trains in full precision.</summary>
    public WeightFormat? Projections { get; }
    /// <summary>Per-row α of every projection, concatenated in slot order (QAT only).</summary>
    public float[] Alphas { get; }
    public float[] AlphaGradients { get; }

    private readonly Dictionary<string, ParameterSlot> _byName;
    // [role][layer]; one entry for embedding, final norm and head (the forward and backward look tensors up by role: no names, no allocation)
    private readonly ParameterSlot[][] _byRole;
    private readonly Dictionary<string, int> _alphaOffset = new(StringComparer.Ordinal);
    private readonly double[] _invFreq;
    private readonly T[] _quantized;       // projection weights after fake-quant, same layout as Parameters (QAT only)
    private readonly T[] _quantizedGrads;  // ∂L/∂Wq before the straight-through step (QAT only)
    private Activations? _acts;
    // The other shape in use (training batches and single validation windows alternate), kept so neither reallocates.
    private Activations? _otherActs;

    public TransformerModel(ModelConfig config, WeightFormat? projections = null)
    {
        if (config.UseQkNorm || config.RopeLayers.Any(r => !r) || config.TemperatureTuning is not null
            || config.RopeScaling is not null)
            throw new NotSupportedException("the trainer implements MobileLLM v1 / LLaMA layers (GQA, RoPE, sliding windows); QK-norm, NoPE layers, temperature tuning and RoPE scaling are not implemented");
        if (projections is { } p && (!WeightFormats.IsParetoQ(p) || typeof(T) != typeof(float)))
            throw new ArgumentException($"QAT needs a ParetoQ grid and float parameters, not {WeightFormats.Name(p)} over {typeof(T).Name}");
        Config = config;
        Projections = projections;
        var slots = new List<ParameterSlot>();
        int offset = 0, alphas = 0;
        foreach (var spec in ModelTensors.For(config))
        {
            slots.Add(new ParameterSlot(spec, offset));
            offset += spec.Rows * spec.Cols;
            if (projections is not null && spec.IsProjection)
            {
                _alphaOffset[spec.Name] = alphas;
                alphas += spec.Rows;
            }
        }
        Slots = slots;
        _byName = slots.ToDictionary(s => s.Spec.Name, StringComparer.Ordinal);
        _byRole = Enum.GetValues<TensorRole>().Select(role => role is TensorRole.Embedding or TensorRole.FinalNorm
            or TensorRole.Head
            ? slots.Where(s => s.Spec.Role == role).Take(1).ToArray()
            : Enumerable.Range(0, config.NumLayers).Select(l
                => _byName[ModelTensors.Name(role, l)]).ToArray()).ToArray();
        Parameters = new T[offset];
        Gradients = new T[offset];
        Alphas = new float[alphas];
        AlphaGradients = new float[alphas];
        _quantized = projections is null ? [] : new T[offset];
        _quantizedGrads = projections is null ? [] : new T[offset];
        _invFreq = Enumerable.Range(0, config.HeadDim / 2).Select(i
            => 1.0 / Math.Pow(config.RopeTheta, 2.0 * i / config.HeadDim)).ToArray();
    }

    public ParameterSlot Slot(string name) => _byName[name];
    public Span<T> Tensor(string name) => Parameters.AsSpan(_byName[name].Offset, _byName[name].Length);

    /// <summary>
    /// GPT-2-style initialisation from a seed: matrices N(0, 0.02²), the projections that write into the residual
    /// stream (o, down) scaled by 1/√(2·layers), norm weights 1.
    /// </summary>
    public void InitializeRandom(ulong seed)
    {
        var random = Runtime.Generation.Pcg32.FromSeed(seed);
        double residualScale = 1 / Math.Sqrt(2.0 * Config.EffectiveLayers);
        foreach (var slot in Slots)
        {
            var values = Parameters.AsSpan(slot.Offset, slot.Length);
            if (slot.Spec.IsNorm)
            {
                values.Fill(T.One);
                continue;
            }
            double std = 0.02 * (slot.Spec.Role is TensorRole.Output or TensorRole.Down ? residualScale : 1);
            for (int i = 0; i < values.Length; i++)
            {
                // Box-Muller from two uniforms in (0, 1].
                double u1 = (random.NextUInt() + 1.0) / 4294967296.0, u2 = random.NextUInt() / 4294967296.0;
                values[i] = T.CreateChecked(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
            }
        }
    }

    /// <summary>
    /// A QAT model with this full-precision model's weights and ParetoQ's initial α for <paramref name="grid"/>: the
    /// start of quantization-aware training, or, untrained, the round-to-nearest (PTQ) baseline.
    /// </summary>
    public TransformerModel<T> WithProjections(WeightFormat grid)
    {
        if (Projections is not null) throw new ArgumentException($"this model's projections are already {WeightFormats.Name(Projections.Value)}; start from a full-precision one");
        var quantized = new TransformerModel<T>(Config, grid);
        Parameters.CopyTo(quantized.Parameters, 0);
        quantized.InitializeAlphas();
        return quantized;
    }

    /// <summary>ParetoQ's initial α per row of every projection, from the current (full-precision) weights.</summary>
    public void InitializeAlphas()
    {
        if (Projections is not { } format) throw new InvalidOperationException("no projection grid: this model trains in full precision");
        var weights = (float[])(object)Parameters;
        foreach (var (name, first) in _alphaOffset)
        {
            var slot = _byName[name];
            for (int r = 0; r < slot.Spec.Rows; r++)
                Alphas[first + r] = Quantizer.InitialScale(format,
                    weights.AsSpan(slot.Offset + r * slot.Spec.Cols, slot.Spec.Cols));
        }
    }

    /// <summary>The α of one projection's rows (QAT only).</summary>
    public Span<float> AlphasOf(string name) => Alphas.AsSpan(_alphaOffset[name], _byName[name].Spec.Rows);

    /// <summary>
    /// Runs <paramref name="sequences"/> sequences of equal length, laid end to end in <paramref name="tokens"/>, and
    /// returns the mean cross-entropy of predicting <paramref name="targets"/> (−1 = unscored) over all of them. Each
    /// sequence attends only within itself and starts at position 0; every matmul takes the whole batch at once.
    /// <paramref name="logits"/> (tokens × vocab), when given, receives the logits. Activations are kept for
    /// <see cref="Backward"/>. With <paramref name="teacherLogits"/>, the loss is (1 − w)·cross-entropy + w·KL(teacher
    /// ‖ model) for w = <paramref name="distillWeight"/> (knowledge distillation).
    /// </summary>
    public T Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, Span<T> logits = default,
        ReadOnlySpan<T> teacherLogits = default, T distillWeight = default, int sequences = 1)
    {
        var c = Config;
        int n = tokens.Length, d = c.HiddenSize;
        if (sequences < 1 || n % sequences != 0) throw new ArgumentException($"{n} tokens do not split into {sequences} equal sequences");
        int length = n / sequences;
        if (length == 0
            || length > c.MaxPositionEmbeddings) throw new ArgumentException($"{length} tokens: a sequence needs 1..{c.MaxPositionEmbeddings}");
        if (targets.Length != n) throw new ArgumentException("one target per token");
        if (_acts is not { } current || current.Tokens != n || current.Sequences != sequences)
            (_acts, _otherActs) = (_otherActs is { } other && other.Tokens == n && other.Sequences == sequences ? other
                : new Activations(c, n, sequences), _acts);
        var a = _acts;
        tokens.CopyTo(a.TokenIds);
        targets.CopyTo(a.Targets);
        ReadOnlySpan<T> weights = Parameters;
        if (Projections is { } format)
        {
            Parameters.CopyTo(_quantized, 0);
            var master = (float[])(object)Parameters;
            var quantized = (float[])(object)_quantized;
            foreach (var (name, first) in _alphaOffset)
            {
                var s = _byName[name];
                FakeQuantizer.Forward(format, master.AsSpan(s.Offset, s.Length), Alphas.AsSpan(first, s.Spec.Rows),
                    quantized.AsSpan(s.Offset, s.Length), s.Spec.Rows, s.Spec.Cols);
            }
            weights = _quantized;
        }

        Ops<T>.Embed(tokens, W(weights, TensorRole.Embedding), d, a.Residual[0]);
        for (int l = 0; l < c.EffectiveLayers; l++)
        {
            var L = a.Layers[l];
            int layer = l / c.LayerRepeat;
            ReadOnlySpan<T> x = a.Residual[l];
            Ops<T>.RmsNorm(x, W(weights, TensorRole.AttentionNorm, layer), n, d, T.CreateChecked(c.RmsNormEps), L.Norm1,
                L.Rstd1);
            Ops<T>.MatMul(L.Norm1, W(weights, TensorRole.Query, layer), n, d, c.QueryDim, L.Q);
            Ops<T>.MatMul(L.Norm1, W(weights, TensorRole.Key, layer), n, d, c.KvDim, L.K);
            Ops<T>.MatMul(L.Norm1, W(weights, TensorRole.Value, layer), n, d, c.KvDim, L.V);
            bool interleaved = c.RopeLayout == RopeLayout.Interleaved;
            Ops<T>.Rope(_invFreq, length, sequences, c.NumHeads, c.HeadDim, 0, interleaved, false, L.Q);
            Ops<T>.Rope(_invFreq, length, sequences, c.NumKvHeads, c.HeadDim, 0, interleaved, false, L.K);
            Ops<T>.Attention(L.Q, L.K, L.V, length, sequences, c.NumHeads, c.NumKvHeads, c.HeadDim, Window(layer),
                L.Attended, L.Probs);
            Ops<T>.MatMul(L.Attended, W(weights, TensorRole.Output, layer), n, c.QueryDim, d, L.Mid);
            for (int i = 0; i < n * d; i++) L.Mid[i] += x[i];
            Ops<T>.RmsNorm(L.Mid, W(weights, TensorRole.FfnNorm, layer), n, d, T.CreateChecked(c.RmsNormEps), L.Norm2,
                L.Rstd2);
            Ops<T>.MatMul(L.Norm2, W(weights, TensorRole.Gate, layer), n, d, c.IntermediateSize, L.Gate);
            Ops<T>.MatMul(L.Norm2, W(weights, TensorRole.Up, layer), n, d, c.IntermediateSize, L.Up);
            Ops<T>.SwiGlu(L.Gate, L.Up, L.Hidden);
            var next = a.Residual[l + 1];
            Ops<T>.MatMul(L.Hidden, W(weights, TensorRole.Down, layer), n, c.IntermediateSize, d, next);
            for (int i = 0; i < n * d; i++) next[i] += L.Mid[i];
        }
        Ops<T>.RmsNorm(a.Residual[c.EffectiveLayers], W(weights, TensorRole.FinalNorm), n, d,
            T.CreateChecked(c.RmsNormEps), a.FinalNorm, a.FinalRstd);
        Ops<T>.MatMul(a.FinalNorm, W(weights, HeadRole), n, d, c.VocabSize, a.Logits);
        if (!logits.IsEmpty) a.Logits.CopyTo(logits);
        if (teacherLogits.IsEmpty) return Ops<T>.CrossEntropy(a.Logits, targets, c.VocabSize, T.One, a.LogitGrads);
        if (teacherLogits.Length != a.Logits.Length) throw new ArgumentException($"{teacherLogits.Length} teacher logits for {a.Logits.Length}");
        if (!(distillWeight >= T.Zero
            && distillWeight <= T.One)) throw new ArgumentException($"distillation weight {distillWeight} must be within 0..1");
        T ce = Ops<T>.CrossEntropy(a.Logits, targets, c.VocabSize, T.One - distillWeight, a.LogitGrads);
        T kl = Ops<T>.Distillation(a.Logits, teacherLogits, targets, c.VocabSize, distillWeight, a.LogitGrads);
        return (T.One - distillWeight) * ce + distillWeight * kl;
    }

    /// <summary>Accumulates ∂loss/∂parameters (and ∂loss/∂α in QAT) of the last <see cref="Forward"/>, scaled by
    /// <paramref name="scale"/>.</summary>
    public void Backward(T scale)
    {
        var a = _acts ?? throw new InvalidOperationException("Backward needs a Forward first");
        var c = Config;
        int n = a.Tokens, d = c.HiddenSize, sequences = a.Sequences, length = n / sequences;
        ReadOnlySpan<T> weights = Projections is null ? Parameters : _quantized;
        // Projection gradients land in ∂L/∂Wq first during QAT, then pass the straight-through step into Gradients.
        T[] projectionGrads = Projections is null ? Gradients : _quantizedGrads;
        if (Projections is not null) Array.Clear(_quantizedGrads);

        var s = a.Scratch;
        var dx = a.ResidualGrad;
        var dlogits = a.LogitGrads;
        if (scale != T.One) Ops<T>.Scale(dlogits, scale);
        var dnorm = s.Norm1;
        dnorm.AsSpan().Clear();
        Ops<T>.MatMulBackward(dlogits, a.FinalNorm, W(weights, HeadRole), n, d, c.VocabSize, dnorm, G(HeadRole));
        dx.AsSpan().Clear();
        Ops<T>.RmsNormBackward(dnorm, a.Residual[c.EffectiveLayers], W(weights, TensorRole.FinalNorm), a.FinalRstd, n,
            d, dx, G(TensorRole.FinalNorm));

        for (int l = c.EffectiveLayers - 1; l >= 0; l--)
        {
            var L = a.Layers[l];
            int layer = l / c.LayerRepeat;
            Span<T> P(TensorRole role)
                => projectionGrads.AsSpan(SlotOf(role, layer).Offset, SlotOf(role, layer).Length);
            // MLP block: dx flows to the residual unchanged and through down → SwiGLU → gate/up → norm.
            // (Scratch reuses one layer's shapes for gradients; Norm1 holds ∂L/∂(normed input) of either norm.)
            s.Hidden.AsSpan().Clear();
            Ops<T>.MatMulBackward(dx, L.Hidden, W(weights, TensorRole.Down, layer), n, c.IntermediateSize, d, s.Hidden,
                P(TensorRole.Down));
            s.Gate.AsSpan().Clear();
            s.Up.AsSpan().Clear();
            Ops<T>.SwiGluBackward(s.Hidden, L.Gate, L.Up, s.Gate, s.Up);
            s.Norm1.AsSpan().Clear();
            Ops<T>.MatMulBackward(s.Gate, L.Norm2, W(weights, TensorRole.Gate, layer), n, d, c.IntermediateSize,
                s.Norm1, P(TensorRole.Gate));
            Ops<T>.MatMulBackward(s.Up, L.Norm2, W(weights, TensorRole.Up, layer), n, d, c.IntermediateSize, s.Norm1,
                P(TensorRole.Up));
            Ops<T>.RmsNormBackward(s.Norm1, L.Mid, W(weights, TensorRole.FfnNorm, layer), L.Rstd2, n, d, dx,
                G(TensorRole.FfnNorm, layer));
            // Attention block.
            s.Attended.AsSpan().Clear();
            Ops<T>.MatMulBackward(dx, L.Attended, W(weights, TensorRole.Output, layer), n, c.QueryDim, d, s.Attended,
                P(TensorRole.Output));
            s.Q.AsSpan().Clear();
            s.K.AsSpan().Clear();
            s.V.AsSpan().Clear();
            Ops<T>.AttentionBackward(s.Attended, L.Q, L.K, L.V, L.Probs, length, sequences, c.NumHeads, c.NumKvHeads,
                c.HeadDim, Window(layer), s.Q, s.K, s.V);
            bool interleaved = c.RopeLayout == RopeLayout.Interleaved;
            Ops<T>.Rope(_invFreq, length, sequences, c.NumHeads, c.HeadDim, 0, interleaved, inverse: true, s.Q);
            Ops<T>.Rope(_invFreq, length, sequences, c.NumKvHeads, c.HeadDim, 0, interleaved, inverse: true, s.K);
            s.Norm1.AsSpan().Clear();
            Ops<T>.MatMulBackward(s.Q, L.Norm1, W(weights, TensorRole.Query, layer), n, d, c.QueryDim, s.Norm1,
                P(TensorRole.Query));
            Ops<T>.MatMulBackward(s.K, L.Norm1, W(weights, TensorRole.Key, layer), n, d, c.KvDim, s.Norm1,
                P(TensorRole.Key));
            Ops<T>.MatMulBackward(s.V, L.Norm1, W(weights, TensorRole.Value, layer), n, d, c.KvDim, s.Norm1,
                P(TensorRole.Value));
            Ops<T>.RmsNormBackward(s.Norm1, a.Residual[l], W(weights, TensorRole.AttentionNorm, layer), L.Rstd1, n, d,
                dx, G(TensorRole.AttentionNorm, layer));
        }
        Ops<T>.EmbedBackward(a.TokenIds, dx, d, G(TensorRole.Embedding));

        if (Projections is { } format)
        {
            var master = (float[])(object)Parameters;
            var grads = (float[])(object)Gradients;
            var dq = (float[])(object)_quantizedGrads;
            foreach (var (name, first) in _alphaOffset)
            {
                var slot = _byName[name];
                FakeQuantizer.Backward(format, master.AsSpan(slot.Offset, slot.Length),
                    Alphas.AsSpan(first, slot.Spec.Rows), dq.AsSpan(slot.Offset, slot.Length),
                    grads.AsSpan(slot.Offset, slot.Length), AlphaGradients.AsSpan(first, slot.Spec.Rows),
                        slot.Spec.Rows, slot.Spec.Cols);
            }
        }
    }

    public void ZeroGradients()
    {
        Array.Clear(Gradients);
        Array.Clear(AlphaGradients);
    }

    private TensorRole HeadRole => Config.TieWordEmbeddings ? TensorRole.Embedding : TensorRole.Head;

    private int Window(int layer) => AttentionWindow.Of(Config, layer);

    private ParameterSlot SlotOf(TensorRole role, int layer = 0) => _byRole[(int)role][layer];
    private ReadOnlySpan<T> W(ReadOnlySpan<T> weights, TensorRole role, int layer = 0)
        => weights.Slice(SlotOf(role, layer).Offset, SlotOf(role, layer).Length);
    private Span<T> G(TensorRole role, int layer = 0)
        => Gradients.AsSpan(SlotOf(role, layer).Offset, SlotOf(role, layer).Length);

    /// <summary>Per-layer forward state kept for the backward.</summary>
    private sealed class LayerActivations(ModelConfig c, int n, int sequences)
    {
        public T[] Norm1 { get; } = new T[n * c.HiddenSize];
        public T[] Rstd1 { get; } = new T[n];
        public T[] Q { get; } = new T[n * c.QueryDim];
        public T[] K { get; } = new T[n * c.KvDim];
        public T[] V { get; } = new T[n * c.KvDim];
        public T[] Probs { get; } = new T[c.NumHeads * n * (n / sequences)]; // [sequences, heads, length, length]
        public T[] Attended { get; } = new T[n * c.QueryDim];
        public T[] Mid { get; } = new T[n * c.HiddenSize];
        public T[] Norm2 { get; } = new T[n * c.HiddenSize];
        public T[] Rstd2 { get; } = new T[n];
        public T[] Gate { get; } = new T[n * c.IntermediateSize];
        public T[] Up { get; } = new T[n * c.IntermediateSize];
        public T[] Hidden { get; } = new T[n * c.IntermediateSize];
    }

    /// <summary>Everything one batch needs, allocated once per batch shape and reused across steps.</summary>
    private sealed class Activations(ModelConfig c, int n, int sequences)
    {
        public int Tokens { get; } = n;
        public int Sequences { get; } = sequences;
        public int[] TokenIds { get; } = new int[n];
        public int[] Targets { get; } = new int[n];
        /// <summary>The residual stream entering each layer, and after the last one.</summary>
        public T[][] Residual { get; } = Enumerable.Range(0, c.EffectiveLayers + 1).Select(_
            => new T[n * c.HiddenSize]).ToArray();
        public LayerActivations[] Layers { get; } = Enumerable.Range(0, c.EffectiveLayers).Select(_
            => new LayerActivations(c, n, sequences)).ToArray();
        public T[] FinalNorm { get; } = new T[n * c.HiddenSize];
        public T[] FinalRstd { get; } = new T[n];
        public T[] Logits { get; } = new T[n * c.VocabSize];
        public T[] LogitGrads { get; } = new T[n * c.VocabSize];
        public T[] ResidualGrad { get; } = new T[n * c.HiddenSize];
        /// <summary>Gradient buffers of one layer, reused layer after layer in the backward.</summary>
        public LayerActivations Scratch { get; } = new(c, n, sequences);
    }
}
