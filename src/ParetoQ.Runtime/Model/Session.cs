namespace ParetoQ.Runtime.Model;

/// <summary>The requested tokens do not fit in the session's context.</summary>
public sealed class ContextLengthExceededException(string message) : Exception(message);

public sealed record SessionOptions
{
    /// <summary>Positions the session can hold; 0 means min(max_position_embeddings, 4096).</summary>
    public int ContextLength { get; init; }
    public KvCacheType KvCache { get; init; } = KvCacheType.Int8;
    /// <summary>Tokens processed per forward step during prefill; longer inputs are fed in chunks.</summary>
    public int MaxBatch { get; init; } = 64;
}

/// <summary>
/// One conversation's state over a shared <see cref="LanguageModel"/>: the KV caches (one per effective layer; ring
/// buffers for local layers) and the activation scratch. Buffers are allocated once here, so the forward pass allocates nothing.
/// Not thread-safe; use one session per thread.
/// </summary>
public sealed class Session : IDisposable
{
    private readonly LanguageModel _model;
    private readonly IComputeBackend _be;
    private readonly BackendKvCache[] _caches;   // (effective layers)
    private readonly BackendBuffer _x;           // (batch, dim) residual stream
    private readonly BackendBuffer _xb;          // (batch, dim) normed input / block output
    private readonly BackendBuffer _q;           // (batch, heads·hd)
    private readonly BackendBuffer _k;           // (batch, kvHeads·hd)
    private readonly BackendBuffer _v;           // (batch, kvHeads·hd)
    private readonly BackendBuffer _att;         // (batch, heads·hd)
    private readonly BackendBuffer _gate;        // (batch, ffn)
    private readonly BackendBuffer _up;          // (batch, ffn)
    private BackendBuffer _logits;               // (1 or batch, vocab)
    private readonly float[] _hostLogits;        // (vocab)

    public ModelConfig Config => _model.Config;
    public int ContextLength { get; }
    public int MaxBatch { get; }
    public KvCacheType KvCacheType { get; }
    /// <summary>Tokens already in the KV cache; the next token goes to this position.</summary>
    public int Position { get; private set; }
    public long KvCacheBytes => _caches.Sum(c => c.Bytes);

    public Session(LanguageModel model, SessionOptions? options = null)
    {
        options ??= new SessionOptions();
        var c = model.Config;
        _model = model;
        _be = model.Backend;
        ContextLength = options.ContextLength == 0 ? Math.Min(c.MaxPositionEmbeddings, 4096) : options.ContextLength;
        if (ContextLength < 1 || ContextLength > c.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(options), $"context length {ContextLength} is outside 1..{c.MaxPositionEmbeddings} (max_position_embeddings)");
        if (options.MaxBatch < 1) throw new ArgumentOutOfRangeException(nameof(options), "MaxBatch must be at least 1");
        MaxBatch = Math.Min(options.MaxBatch, ContextLength);
        KvCacheType = options.KvCache;

        _caches = new BackendKvCache[c.EffectiveLayers];
        for (int l = 0; l < c.EffectiveLayers; l++)
        {
            var a = model.Attention[l / c.LayerRepeat];
            bool ring = a.Kind == AttentionKind.Local && a.Window < ContextLength;
            _caches[l] = _be.CreateKvCache(ring ? a.Window : ContextLength, c.NumKvHeads, c.HeadDim, options.KvCache, ring);
        }
        int b = MaxBatch;
        _x = _be.Allocate(b * c.HiddenSize);
        _xb = _be.Allocate(b * c.HiddenSize);
        _q = _be.Allocate(b * c.QueryDim);
        _k = _be.Allocate(b * c.KvDim);
        _v = _be.Allocate(b * c.KvDim);
        _att = _be.Allocate(b * c.QueryDim);
        _gate = _be.Allocate(b * c.IntermediateSize);
        _up = _be.Allocate(b * c.IntermediateSize);
        _logits = _be.Allocate(c.VocabSize);
        _hostLogits = new float[c.VocabSize];
    }

    /// <summary>Forgets the conversation; the caches are overwritten as new tokens arrive.</summary>
    public void Reset() => Position = 0;

    /// <summary>Feeds tokens (prefill when many, decode when one) and returns the logits after the last one, valid until the next call.</summary>
    public ReadOnlySpan<float> Forward(scoped ReadOnlySpan<int> tokens)
    {
        CheckTokens(tokens);
        for (int start = 0; start < tokens.Length; start += MaxBatch)
        {
            var chunk = tokens.Slice(start, Math.Min(MaxBatch, tokens.Length - start));
            Step(chunk, start + chunk.Length == tokens.Length ? Logits.Last : Logits.None);
        }
        _be.CopyToHost(_logits, 0, _hostLogits);
        return _hostLogits;
    }

    /// <summary>Feeds tokens and writes the logits after every one of them into <paramref name="logits"/> (tokens, vocab): for perplexity.</summary>
    public void Forward(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        CheckTokens(tokens);
        int vocab = Config.VocabSize;
        if (logits.Length < (long)tokens.Length * vocab) throw new ArgumentException($"logits holds {logits.Length} floats; {tokens.Length} tokens need {(long)tokens.Length * vocab}", nameof(logits));
        if (_logits.Length < MaxBatch * vocab)
        {
            _logits.Dispose();
            _logits = _be.Allocate(MaxBatch * vocab);
        }
        for (int start = 0; start < tokens.Length; start += MaxBatch)
        {
            var chunk = tokens.Slice(start, Math.Min(MaxBatch, tokens.Length - start));
            Step(chunk, Logits.All);
            _be.CopyToHost(_logits, 0, logits.Slice(start * vocab, chunk.Length * vocab));
        }
    }

    private void CheckTokens(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to process", nameof(tokens));
        if ((long)Position + tokens.Length > ContextLength)
            throw new ContextLengthExceededException($"{tokens.Length} tokens at position {Position} need {Position + tokens.Length} positions, more than the context length {ContextLength}");
        foreach (int t in tokens)
            if ((uint)t >= (uint)Config.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), t, $"token id {t} is outside the vocabulary (0..{Config.VocabSize - 1})");
    }

    private enum Logits { None, Last, All }

    // The forward pass over n ≤ MaxBatch tokens at positions Position..Position+n−1.
    private void Step(ReadOnlySpan<int> tokens, Logits wanted)
    {
        var c = Config;
        var m = _model;
        int n = tokens.Length, pos = Position;
        _be.Embed(m.Embedding, tokens, _x);
        for (int l = 0; l < c.EffectiveLayers; l++)
        {
            var w = m.Layers[l / c.LayerRepeat];
            var a = m.Attention[l / c.LayerRepeat];
            // attention block
            _be.RmsNorm(_x, 0, n, w.AttentionNorm, c.RmsNormEps, _xb);
            _be.MatMul(_xb, n, new(w.Query, _q), new(w.Key, _k), new(w.Value, _v));
            _be.PositionEncode(_q, _k, n, pos, a);
            _be.Attention(_caches[l], _q, _k, _v, _att, n, pos, a);
            _be.MatMul(_att, n, new MatMulOutput(w.Output, _xb));
            _be.Add(_x, _xb, n * c.HiddenSize);
            // SwiGLU MLP block
            _be.RmsNorm(_x, 0, n, w.FfnNorm, c.RmsNormEps, _xb);
            _be.MatMul(_xb, n, new(w.Gate, _gate), new(w.Up, _up));
            _be.SwiGlu(_gate, _up, n * c.IntermediateSize);
            _be.MatMul(_gate, n, new MatMulOutput(w.Down, _xb));
            _be.Add(_x, _xb, n * c.HiddenSize);
        }
        Position += n;
        if (wanted == Logits.None) return;
        int first = wanted == Logits.Last ? n - 1 : 0, count = n - first;
        _be.RmsNorm(_x, first, count, m.FinalNorm, c.RmsNormEps, _xb);
        _be.MatMul(_xb, count, new MatMulOutput(m.Head, _logits));
    }

    /// <summary>Frees the caches and buffers (device memory on accelerators).</summary>
    public void Dispose()
    {
        foreach (var cache in _caches) cache.Dispose();
        foreach (var buffer in (BackendBuffer[])[_x, _xb, _q, _k, _v, _att, _gate, _up, _logits]) buffer.Dispose();
    }
}
