using ParetoQ.Runtime.Backends;

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
    /// <summary>
    /// Holds logits for every token of a step (MaxBatch × vocab floats), as
    /// <see cref="Session.Forward(ReadOnlySpan{int}, Span{float})"/> needs for scoring; off, the session holds the last
    /// token's only.
    /// </summary>
    public bool AllLogits { get; init; }
}

/// <summary>
/// One conversation's state over a shared <see cref="LanguageModel"/>: its <see cref="RunState"/> (KV caches, one per
/// effective layer, ring buffers for local layers; activations; the backend's scratch), allocated once here, so the
/// forward pass allocates nothing. Not thread-safe; use one session per thread.
/// </summary>
public sealed class Session : IDisposable
{
    private readonly LanguageModel _model;
    private readonly IComputeBackend _be;
    private readonly RunState _s;

    public ModelConfig Config => _model.Config;
    public int ContextLength { get; }
    public int MaxBatch { get; }
    public KvCacheType KvCacheType { get; }
    /// <summary>Tokens already in the KV cache; the next token goes to this position.</summary>
    public int Position { get; private set; }
    public long KvCacheBytes => _s.KvCacheBytes;

    public Session(LanguageModel model, SessionOptions? options = null)
    {
        options ??= new SessionOptions();
        var c = model.Config;
        _model = model;
        _be = model.Backend;
        ContextLength = options.ContextLength == 0 ? Math.Min(c.MaxPositionEmbeddings, 4096) : options.ContextLength;
        if (ContextLength < 1 || ContextLength > c.MaxPositionEmbeddings)
            throw new ArgumentException(
                $"context length {ContextLength} is outside 1..{c.MaxPositionEmbeddings} (max_position_embeddings)");
        if (options.MaxBatch < 1) throw new ArgumentOutOfRangeException(nameof(options), "MaxBatch must be at least 1");
        MaxBatch = Math.Min(options.MaxBatch, ContextLength);
        KvCacheType = options.KvCache;
        _s = new RunState(model, ContextLength, MaxBatch, options.KvCache, options.AllLogits);
    }

    /// <summary>Forgets the conversation; the caches are overwritten as new tokens arrive.</summary>
    public void Reset() => Position = 0;

    /// <summary>Feeds tokens (prefill when many, decode when one) and returns the logits after the last one, valid
    /// until the next call.</summary>
    public ReadOnlySpan<float> Forward(scoped ReadOnlySpan<int> tokens)
    {
        CheckTokens(tokens);
        for (int start = 0; start < tokens.Length; start += MaxBatch)
        {
            var chunk = tokens.Slice(start, Math.Min(MaxBatch, tokens.Length - start));
            Step(chunk, start + chunk.Length == tokens.Length ? Logits.Last : Logits.None);
        }
        _be.CopyToHost(_s.Logits, 0, _s.HostLogits);
        return _s.HostLogits;
    }

    /// <summary>
    /// Feeds tokens and writes the logits after every one of them into <paramref name="logits"/> (tokens, vocab): for
    /// perplexity. The session must be opened with <see cref="SessionOptions.AllLogits"/>.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (_s.LogitRows < MaxBatch) throw new InvalidOperationException("this session holds one token's logits; open it with SessionOptions.AllLogits to score every token");
        CheckTokens(tokens);
        int vocab = Config.VocabSize;
        if (logits.Length < (long)tokens.Length * vocab) throw new ArgumentException($"logits holds {logits.Length} floats; {tokens.Length} tokens need {(long)tokens.Length * vocab}", nameof(logits));
        for (int start = 0; start < tokens.Length; start += MaxBatch)
        {
            var chunk = tokens.Slice(start, Math.Min(MaxBatch, tokens.Length - start));
            Step(chunk, Logits.All);
            _be.CopyToHost(_s.Logits, 0, logits.Slice(start * vocab, chunk.Length * vocab));
        }
    }

    private void CheckTokens(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to process", nameof(tokens));
        if ((long)Position + tokens.Length > ContextLength)
            throw new ContextLengthExceededException($"{tokens.Length} tokens at position {Position} need {Position + tokens.Length} positions, more than the context length {ContextLength}");
        foreach (int t in tokens)
            if ((uint)t >= (uint)Config.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), t,
                $"token id {t} is outside the vocabulary (0..{Config.VocabSize - 1})");
    }

    private enum Logits { None, Last, All }

    // The forward pass over n ≤ MaxBatch tokens at positions Position..Position+n−1.
    private void Step(ReadOnlySpan<int> tokens, Logits wanted)
    {
        var c = Config;
        var m = _model;
        var s = _s;
        int n = tokens.Length, pos = Position;
        _be.Embed(s.Scratch, m.Embedding, tokens, s.X);
        for (int l = 0; l < c.EffectiveLayers; l++)
        {
            var w = m.Layers[l / c.LayerRepeat];
            var a = m.Attention[l / c.LayerRepeat];
            // attention block
            _be.RmsNorm(s.X, w.AttentionNorm, 0, n, c.RmsNormEps, s.Xb);
            _be.MatMul(s.Scratch, s.Xb, n, new(w.Query, s.Q), new(w.Key, s.K), new(w.Value, s.V));
            _be.PositionEncode(n, pos, a, s.Q, s.K);
            _be.Attention(s.Scratch, s.Q, s.K, s.V, n, pos, a, s.Caches[l], s.Attended);
            _be.MatMul(s.Scratch, s.Attended, n, new MatMulOutput(w.Output, s.Xb));
            _be.Add(s.Xb, n * c.HiddenSize, s.X);
            // SwiGLU MLP block
            _be.RmsNorm(s.X, w.FfnNorm, 0, n, c.RmsNormEps, s.Xb);
            _be.MatMul(s.Scratch, s.Xb, n, new(w.Gate, s.Gate), new(w.Up, s.Up));
            _be.SwiGlu(s.Up, n * c.IntermediateSize, s.Gate);
            _be.MatMul(s.Scratch, s.Gate, n, new MatMulOutput(w.Down, s.Xb));
            _be.Add(s.Xb, n * c.HiddenSize, s.X);
        }
        Position += n;
        if (wanted == Logits.None) return;
        int first = wanted == Logits.Last ? n - 1 : 0, count = n - first;
        _be.RmsNorm(s.X, m.FinalNorm, first, count, c.RmsNormEps, s.Xb);
        _be.MatMul(s.Scratch, s.Xb, count, new MatMulOutput(m.Head, s.Logits));
    }

    /// <summary>Frees the caches and buffers (device memory on accelerators).</summary>
    public void Dispose() => _s.Dispose();
}
