using ParetoQ.Runtime.Model;

namespace ParetoQ.Runtime.Backends;

/// <summary>
/// Every buffer one session's forward pass touches, declared here with its shape and allocated once on the backend when
/// the session opens: the KV caches, the activations of one step of up to <see cref="Batch"/> tokens, the logits, and
/// the backend's own scratch (which says what it holds per worker thread). Nothing grows later.
/// </summary>
public sealed class RunState : IDisposable
{
    public int Batch { get; }
    /// <summary>Tokens a step can return logits for: 1, or <see cref="Batch"/> when the session scores every
    /// token.</summary>
    public int LogitRows { get; }

    public BackendKvCache[] Caches { get; }  // (effective layers); (context or window, kvHeads, hd) each
    public BackendBuffer X { get; }          // (batch, dim) residual stream
    public BackendBuffer Xb { get; }         // (batch, dim) normed input / block output
    public BackendBuffer Q { get; }          // (batch, heads·hd)
    public BackendBuffer K { get; }          // (batch, kvHeads·hd)
    public BackendBuffer V { get; }          // (batch, kvHeads·hd)
    public BackendBuffer Attended { get; }   // (batch, heads·hd)
    public BackendBuffer Gate { get; }       // (batch, ffn)
    public BackendBuffer Up { get; }         // (batch, ffn)
    public BackendBuffer Logits { get; }     // (logit rows, vocab)
    public float[] HostLogits { get; }       // (vocab) the last token's logits, copied out
    public BackendScratch Scratch { get; }   // the backend's working memory for operands up to this shape

    public RunState(LanguageModel model, int contextLength, int batch, KvCacheType kvCache, bool allLogits)
    {
        var c = model.Config;
        var be = model.Backend;
        Batch = batch;
        LogitRows = allLogits ? batch : 1;
        Caches = new BackendKvCache[c.EffectiveLayers];
        int kvPositions = 0;
        for (int l = 0; l < c.EffectiveLayers; l++)
        {
            var a = model.Attention[l / c.LayerRepeat];
            bool ring = a.Kind == AttentionKind.Local && a.Window < contextLength;
            int capacity = ring ? a.Window : contextLength;
            Caches[l] = be.CreateKvCache(capacity, c.NumKvHeads, c.HeadDim, kvCache, ring);
            kvPositions = Math.Max(kvPositions, capacity);
        }
        X = be.Allocate(batch * c.HiddenSize);
        Xb = be.Allocate(batch * c.HiddenSize);
        Q = be.Allocate(batch * c.QueryDim);
        K = be.Allocate(batch * c.KvDim);
        V = be.Allocate(batch * c.KvDim);
        Attended = be.Allocate(batch * c.QueryDim);
        Gate = be.Allocate(batch * c.IntermediateSize);
        Up = be.Allocate(batch * c.IntermediateSize);
        Logits = be.Allocate(checked(LogitRows * c.VocabSize));
        HostLogits = new float[c.VocabSize];
        int width = Math.Max(c.HiddenSize, Math.Max(c.QueryDim, c.IntermediateSize));
        Scratch = be.CreateScratch(new ScratchShape(batch, width, kvPositions, c.NumHeads));
    }

    public long KvCacheBytes => Caches.Sum(c => c.Bytes);

    /// <summary>Frees the caches, buffers and scratch (device memory on accelerators).</summary>
    public void Dispose()
    {
        foreach (var cache in Caches) cache.Dispose();
        foreach (var buffer in (BackendBuffer[])[X, Xb, Q, K, V, Attended, Gate, Up, Logits]) buffer.Dispose();
        Scratch.Dispose();
    }
}
