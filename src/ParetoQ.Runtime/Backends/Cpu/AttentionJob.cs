using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Runtime.Backends.Cpu;

/// <summary>
/// Attention over an int8 KV cache as a parallel job: an item is one token's query heads that share one KV head, run by
/// <see cref="Int8Attention.HeadGroup"/> on the worker's scores and weights.
/// </summary>
internal sealed unsafe class AttentionJob : IParallelJob
{
    private CpuScratch _scratch = null!;
    private CpuBuffer _q = null!, _k = null!, _v = null!, _output = null!;
    private CpuKvCache _cache = null!;
    private int _startPos;
    private LayerAttention _layer = null!;
    private KernelPath _path;
    /// <summary>The token when items are KV heads of one token; −1 when items are (token, KV head) pairs.</summary>
    public int Token;

    public void Set(CpuScratch scratch, CpuBuffer q, CpuBuffer k, CpuBuffer v, int startPos, LayerAttention layer,
        CpuKvCache cache, KernelPath path, CpuBuffer output)
    {
        (_scratch, _q, _k, _v, _startPos, _layer, _cache, _path, _output) = (scratch, q, k, v, startPos, layer, cache,
            path, output);
    }

    public void Execute(int begin, int end, int worker)
    {
        var layer = _layer;
        int kvHeads = layer.KvHeads, hd = layer.HeadDim, group = layer.Heads / kvHeads;
        int qWidth = layer.Heads * hd, kvWidth = kvHeads * hd;
        var cache = _cache.View;
        var scratch = _scratch.Workers[worker];
        fixed (float* weights = scratch.AttentionWeights)
        fixed (int* dots = scratch.AttentionDots)
            for (int item = begin; item < end; item++)
            {
                var (t, g) = Token >= 0 ? (Token, item) : (item / kvHeads, item % kvHeads);
                int pos = _startPos + t;
                float* q = _q.Pointer + t * qWidth + g * group * hd;
                Int8Attention.HeadGroup(_path, q, _k.Pointer + t * kvWidth + g * hd, _v.Pointer + t * kvWidth + g * hd,
                    cache, g, group, layer.FirstVisible(pos), pos, weights, dots,
                        _output.Pointer + t * qWidth + g * group * hd);
            }
    }
}
