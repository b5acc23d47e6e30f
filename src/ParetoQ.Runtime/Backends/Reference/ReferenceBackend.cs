using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Backends.Reference;

/// <summary>
/// The reference backend (exact mode, <c>--exact</c>): fp32 activations through the scalar reference kernels, and
/// attention over the cache in plain loops. It is the accuracy oracle the fast CPU backend and the ILGPU backend are
/// tested against. Matmul rows may be split over worker threads; every row's sum is the same loop either way.
/// </summary>
public sealed class ReferenceBackend(int threads = 1) : HostBackend(threads)
{
    public override string Name => "cpu-exact";

    internal override void PrepareMatMulInput(CpuScratch scratch, CpuBuffer x, int tokens, int cols,
        bool packedWeights) { }

    internal override void MatMulTiles(CpuScratch scratch, WorkerScratch worker, CpuWeight w, CpuBuffer x, int tokens,
        int tileBegin, int tileEnd, CpuBuffer y)
    {
        int rowEnd = Math.Min(w.Rows, tileEnd * PackedLayout.TileRows);
        ScalarKernels.MatMulRows(w.Format, w.Rows, w.Cols, w.Tensor.Data, x.Data.AsSpan(0, tokens * w.Cols), tokens,
            tileBegin * PackedLayout.TileRows, rowEnd, worker.Codes, worker.Row, y.Data.AsSpan(0, tokens * w.Rows));
    }

    public override void Attention(BackendScratch scratch, BackendBuffer q, BackendBuffer k, BackendBuffer v,
        int tokens, int startPos, LayerAttention layer, BackendKvCache cache, BackendBuffer output) =>
        ReferenceAttention.Run((CpuScratch)scratch, (CpuBuffer)q, (CpuBuffer)k, (CpuBuffer)v, tokens, startPos, layer,
            (CpuKvCache)cache, (CpuBuffer)output);

    public override void SwiGlu(BackendBuffer up, int count, BackendBuffer gate) =>
        ScalarKernels.SwiGlu(Data(up).AsSpan(0, count), Data(gate).AsSpan(0, count));
}

/// <summary>
/// Attention over a host KV cache in plain fp32 loops, one head at a time, on the calling thread: the reference's, and
/// the fast backend's for an fp32 cache. Cached keys and values are read dequantized; the token's own at full
/// precision.
/// </summary>
internal static class ReferenceAttention
{
    public static void Run(CpuScratch scratch, CpuBuffer qBuf, CpuBuffer kBuf, CpuBuffer vBuf, int tokens, int startPos,
        LayerAttention layer, CpuKvCache cache, CpuBuffer output)
    {
        float[] q = qBuf.Data, k = kBuf.Data, v = vBuf.Data, o = output.Data;
        int hd = layer.HeadDim, qWidth = layer.Heads * hd, kvWidth = layer.KvHeads * hd;
        int group = layer.Heads / layer.KvHeads;
        float scale = 1f / MathF.Sqrt(hd);
        for (int t = 0; t < tokens; t++)
        {
            int pos = startPos + t;
            var kt = k.AsSpan(t * kvWidth, kvWidth);
            var vt = v.AsSpan(t * kvWidth, kvWidth);
            cache.Write(pos, kt, vt);
            int first = layer.FirstVisible(pos);
            var scores = scratch.Scores.AsSpan(0, pos - first + 1);
            for (int h = 0; h < layer.Heads; h++)
            {
                int g = h / group;
                var qh = q.AsSpan(t * qWidth + h * hd, hd);
                var kOwn = kt.Slice(g * hd, hd);
                for (int j = first; j < pos; j++) scores[j - first] = cache.DotKey(qh, j, g) * scale;
                scores[pos - first] = ScalarKernels.Dot(qh, kOwn) * scale;
                ScalarKernels.Softmax(scores);

                var oh = o.AsSpan(t * qWidth + h * hd, hd);
                oh.Clear();
                for (int j = first; j < pos; j++) cache.AccumulateValue(j, g, scores[j - first], oh);
                var vOwn = vt.Slice(g * hd, hd);
                float p = scores[pos - first];
                for (int i = 0; i < hd; i++) oh[i] += p * vOwn[i];
            }
        }
    }
}
