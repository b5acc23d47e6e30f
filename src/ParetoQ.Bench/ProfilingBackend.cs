using System.Diagnostics;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;

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
        _totals[operation] = _totals.TryGetValue(operation, out var t) ? (t.Ticks + elapsed, t.Calls + 1) : (elapsed, 1);
    }

    public BackendWeight Upload(PqTensor tensor, int rows, int cols) => inner.Upload(tensor, rows, cols);
    public BackendBuffer Allocate(int length) => inner.Allocate(length);
    public BackendKvCache CreateKvCache(int capacity, int kvHeads, int headDim, KvCacheType type, bool ring) =>
        inner.CreateKvCache(capacity, kvHeads, headDim, type, ring);

    public void Embed(BackendWeight table, ReadOnlySpan<int> tokens, BackendBuffer x)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Embed(table, tokens, x);
        Add("embed", start);
    }

    public void RmsNorm(BackendBuffer x, int firstToken, int tokens, BackendWeight weight, float eps, BackendBuffer y)
    {
        long start = Stopwatch.GetTimestamp();
        inner.RmsNorm(x, firstToken, tokens, weight, eps, y);
        Add("rms_norm", start);
    }

    public void MatMul(BackendBuffer x, int tokens, params ReadOnlySpan<MatMulOutput> outputs)
    {
        var key = (outputs[0].Weight, outputs.Length);
        if (!_matMulNames.TryGetValue(key, out var name))
        {
            var w = outputs[0].Weight;
            name = _matMulNames[key] = $"matmul {outputs.Length}x {w.Rows}x{w.Cols} {Runtime.Quantization.WeightFormats.Name(w.Format)}";
        }
        long start = Stopwatch.GetTimestamp();
        inner.MatMul(x, tokens, outputs);
        Add(name, start);
    }

    public void PositionEncode(BackendBuffer q, BackendBuffer k, int tokens, int startPos, LayerAttention layer)
    {
        long start = Stopwatch.GetTimestamp();
        inner.PositionEncode(q, k, tokens, startPos, layer);
        Add("position_encode", start);
    }

    public void Attention(BackendKvCache cache, BackendBuffer q, BackendBuffer k, BackendBuffer v, BackendBuffer output, int tokens, int startPos, LayerAttention layer)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Attention(cache, q, k, v, output, tokens, startPos, layer);
        Add($"attention {layer.Kind.ToString().ToLowerInvariant()}", start);
    }

    public void SwiGlu(BackendBuffer gate, BackendBuffer up, int count)
    {
        long start = Stopwatch.GetTimestamp();
        inner.SwiGlu(gate, up, count);
        Add("swiglu", start);
    }

    public void Add(BackendBuffer x, BackendBuffer y, int count)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Add(x, y, count);
        Add("add", start);
    }

    public void CopyToHost(BackendBuffer x, int offset, Span<float> destination)
    {
        long start = Stopwatch.GetTimestamp();
        inner.CopyToHost(x, offset, destination);
        Add("copy_to_host", start);
    }

    public void CopyFromHost(ReadOnlySpan<float> source, BackendBuffer x, int offset) => inner.CopyFromHost(source, x, offset);

    /// <summary>The wrapped backend belongs to the caller and stays open.</summary>
    public void Dispose() { }
}
