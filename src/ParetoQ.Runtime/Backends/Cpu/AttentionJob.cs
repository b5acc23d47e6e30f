using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Runtime.Backends.Cpu;

/// <summary>
/// Attention over an int8 KV cache as a parallel job. For a chunk of tokens an item is one token's query heads that
/// share one KV head (<see cref="Int8Attention.HeadGroup"/>). For one token an item is one segment of one KV head's
/// positions (<see cref="Int8Attention.Segment"/>), so a decode step at long context splits over both threads even when
/// the KV heads do not divide among them; <see cref="MergeSegments"/> then combines the segments.
/// </summary>
internal sealed unsafe class AttentionJob : IParallelJob
{
    private CpuScratch _scratch = null!;
    private CpuBuffer _q = null!, _k = null!, _v = null!, _output = null!;
    private CpuKvCache _cache = null!;
    private int _startPos;
    private LayerAttention _layer = null!;
    private KernelPath _path;
    private int _token = -1, _segments = 1;

    public void Set(CpuScratch scratch, CpuBuffer q, CpuBuffer k, CpuBuffer v, int startPos, LayerAttention layer,
        CpuKvCache cache, KernelPath path, CpuBuffer output)
    {
        (_scratch, _q, _k, _v, _startPos, _layer, _cache, _path, _output) = (scratch, q, k, v, startPos, layer, cache,
            path, output);
    }

    /// <summary>Items are (token, KV head) pairs of the whole chunk: <paramref name="tokens"/> × KV heads.</summary>
    public int ForChunk(int tokens)
    {
        _token = -1;
        return tokens * _layer.KvHeads;
    }

    /// <summary>Items are (KV head, segment) pairs of token <paramref name="token"/> of the chunk.</summary>
    public int ForToken(int token)
    {
        _token = token;
        int pos = _startPos + token;
        _segments = Int8Attention.Segments(pos - _layer.FirstVisible(pos));
        return _layer.KvHeads * _segments;
    }

    /// <summary>Bytes of int8 keys and values that token <paramref name="token"/>'s attention reads.</summary>
    public long TokenKvBytes(int token)
    {
        int pos = _startPos + token;
        return 2L * _layer.KvHeads * (pos - _layer.FirstVisible(pos)) * _layer.HeadDim;
    }

    public void Execute(int begin, int end, int worker)
    {
        var layer = _layer;
        int kvHeads = layer.KvHeads, hd = layer.HeadDim, group = layer.Heads / kvHeads;
        int qWidth = layer.Heads * hd, kvWidth = kvHeads * hd;
        var cache = _cache.View;
        var scratch = _scratch.Workers[worker];
        fixed (float* weights = scratch.AttentionWeights, partials = scratch.AttentionPartials)
        fixed (float* tokenPartials = _scratch.AttentionPartials)
        fixed (int* dots = scratch.AttentionDots)
            for (int item = begin; item < end; item++)
            {
                var (t, g, segment) = _token >= 0 ? (_token, item / _segments, item % _segments)
                    : (item / kvHeads, item % kvHeads, -1);
                int pos = _startPos + t;
                float* q = _q.Pointer + t * qWidth + g * group * hd;
                float* kOwn = _k.Pointer + t * kvWidth + g * hd, vOwn = _v.Pointer + t * kvWidth + g * hd;
                float* output = _output.Pointer + t * qWidth + g * group * hd;
                if (segment < 0 || _segments == 1)
                    Int8Attention.HeadGroup(_path, q, kOwn, vOwn, cache, g, group, layer.FirstVisible(pos), pos,
                        weights, dots, partials, output);
                else
                    Int8Attention.Segment(_path, q, kOwn, vOwn, cache, g, group, layer.FirstVisible(pos), pos,
                        segment, _segments, weights, dots,
                        tokenPartials + item * Int8Attention.PartialFloats(group, hd));
            }
    }

    /// <summary>After a <see cref="ForToken"/> run of more than one segment: each KV head's segments merged into the
    /// token's output.</summary>
    public void MergeSegments()
    {
        if (_token < 0 || _segments == 1) return;
        var layer = _layer;
        int kvHeads = layer.KvHeads, hd = layer.HeadDim, group = layer.Heads / kvHeads;
        int partialFloats = Int8Attention.PartialFloats(group, hd);
        fixed (float* partials = _scratch.AttentionPartials)
            for (int g = 0; g < kvHeads; g++)
                Int8Attention.Merge(_segments, group, hd, partials + g * _segments * partialFloats,
                    _output.Pointer + _token * layer.Heads * hd + g * group * hd);
    }
}
