using System.Diagnostics;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Format;

namespace ParetoQ.Bench;

/// <summary>
/// Wraps a backend and adds up the wall time of each operation (matmuls by weight shape), for
/// <c>paretoq-bench model --profile</c>: where a decoded token's time goes.
/// </summary>
public sealed class ProfilingBackend(IComputeBackend inner) : IComputeBackend
{
    private readonly Dictionary<string, (long Ticks, long Calls)> _totals = [];
    private readonly Dictionary<(BackendWeight, int), string> _matMulNames = [];

    public string Name => inner.Name;

    /// <summary>Operation name → (seconds, calls) since the last <see cref="Clear"/>.</summary>
    public IEnumerable<(string Operation, double Seconds, long Calls)> Totals =>
        _totals.Select(kv => (kv.Key, kv.Value.Ticks / (double)Stopwatch.Frequency, kv.Value.Calls));

    public void Clear() => _totals.Clear();

    private void Add(string operation, long start)
    {
        long elapsed = Stopwatch.GetTimestamp() - start;
        _totals[operation] = _totals.TryGetValue(operation, out var t) ? (t.Ticks + elapsed, t.Calls + 1)
            : (elapsed, 1);
    }

    public BackendWeight Upload(PqTensor tensor, int rows, int cols) => inner.Upload(tensor, rows, cols);
    public BackendBuffer Allocate(int length) => inner.Allocate(length);
    public BackendKvCache CreateKvCache(int capacity, int kvHeads, int headDim, KvCacheType type, bool ring) =>
        inner.CreateKvCache(capacity, kvHeads, headDim, type, ring);
    public BackendScratch CreateScratch(ScratchShape shape) => inner.CreateScratch(shape);

    public void Embed(BackendScratch scratch, BackendWeight table, ReadOnlySpan<int> tokens, BackendBuffer x)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Embed(scratch, table, tokens, x);
        Add("embed", start);
    }

    public void RmsNorm(BackendBuffer x, BackendWeight weight, int firstToken, int tokens, float eps, BackendBuffer y)
    {
        long start = Stopwatch.GetTimestamp();
        inner.RmsNorm(x, weight, firstToken, tokens, eps, y);
        Add("rms_norm", start);
    }

    public void MatMul(BackendScratch scratch, BackendBuffer x, int tokens, params ReadOnlySpan<MatMulOutput> outputs)
    {
        var key = (outputs[0].Weight, outputs.Length);
        if (!_matMulNames.TryGetValue(key, out var name))
        {
            var w = outputs[0].Weight;
            name = _matMulNames[key] = $"matmul {outputs.Length}x {w.Rows}x{w.Cols} {Runtime.Quantization.WeightFormats.Name(w.Format)}";
        }
        long start = Stopwatch.GetTimestamp();
        inner.MatMul(scratch, x, tokens, outputs);
        Add(name, start);
    }

    public void PositionEncode(int tokens, int startPos, LayerAttention layer, BackendBuffer q, BackendBuffer k)
    {
        long start = Stopwatch.GetTimestamp();
        inner.PositionEncode(tokens, startPos, layer, q, k);
        Add("position_encode", start);
    }

    public void Attention(BackendScratch scratch, BackendBuffer q, BackendBuffer k, BackendBuffer v, int tokens,
        int startPos, LayerAttention layer, BackendKvCache cache, BackendBuffer output)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Attention(scratch, q, k, v, tokens, startPos, layer, cache, output);
        Add($"attention {layer.Kind.ToString().ToLowerInvariant()}", start);
    }

    public void SwiGlu(BackendBuffer up, int count, BackendBuffer gate)
    {
        long start = Stopwatch.GetTimestamp();
        inner.SwiGlu(up, count, gate);
        Add("swiglu", start);
    }

    public void Add(BackendBuffer y, int count, BackendBuffer x)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Add(y, count, x);
        Add("add", start);
    }

    public void CopyToHost(BackendBuffer x, int offset, Span<float> destination)
    {
        long start = Stopwatch.GetTimestamp();
        inner.CopyToHost(x, offset, destination);
        Add("copy_to_host", start);
    }

    public void CopyFromHost(ReadOnlySpan<float> source, int offset, BackendBuffer x)
        => inner.CopyFromHost(source, offset, x);

    /// <summary>The wrapped backend belongs to the caller and stays open.</summary>
    public void Dispose() { }
}
