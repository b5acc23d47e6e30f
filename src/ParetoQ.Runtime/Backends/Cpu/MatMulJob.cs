using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Runtime.Backends.Cpu;

/// <summary>
/// One fused matmul call on a CPU backend: the outputs' tiles of 4 rows are numbered one after another and the pool
/// splits that range; each share runs the backend's tile loop on its worker's scratch.
/// </summary>
internal sealed class MatMulJob : IParallelJob
{
    private const int MaxOutputs = 4;
    private readonly CpuWeight[] _weights = new CpuWeight[MaxOutputs];
    private readonly CpuBuffer[] _outputs = new CpuBuffer[MaxOutputs];
    private readonly int[] _firstTile = new int[MaxOutputs + 1];
    private HostBackend _backend = null!;
    private CpuScratch _scratch = null!;
    private CpuBuffer _x = null!;
    private int _count, _tokens;

    /// <summary>Weight bytes of the prepared call, all outputs together.</summary>
    public long WeightBytes { get; private set; }

    /// <summary>Takes one call's operands and readies its input; returns the number of tiles to split.</summary>
    public int Prepare(HostBackend backend, CpuScratch scratch, CpuBuffer x, int tokens,
        ReadOnlySpan<MatMulOutput> outputs)
    {
        if (outputs.Length > MaxOutputs) throw new ArgumentException($"at most {MaxOutputs} fused matmuls",
            nameof(outputs));
        (_backend, _scratch, _x, _tokens, _count) = (backend, scratch, x, tokens, outputs.Length);
        bool packed = false;
        WeightBytes = 0;
        for (int i = 0; i < outputs.Length; i++)
        {
            _weights[i] = (CpuWeight)outputs[i].Weight;
            _outputs[i] = (CpuBuffer)outputs[i].Output;
            _firstTile[i + 1] = _firstTile[i] + _weights[i].Tiles;
            packed |= _weights[i].IsPacked;
            WeightBytes += _weights[i].Tensor.Length;
        }
        backend.PrepareMatMulInput(scratch, x, tokens, _weights[0].Cols, packed);
        return _firstTile[_count];
    }

    public void Execute(int begin, int end, int worker)
    {
        for (int i = 0; i < _count; i++)
        {
            int lo = Math.Max(begin, _firstTile[i]) - _firstTile[i],
                hi = Math.Min(end, _firstTile[i + 1]) - _firstTile[i];
            if (lo < hi) _backend.MatMulTiles(_scratch, _scratch.Workers[worker], _weights[i], _x, _tokens, lo, hi,
                _outputs[i]);
        }
    }
}

/// <summary>A matmul input quantized to int8 over the pool, token rows per item.</summary>
internal sealed class QuantizeJob : IParallelJob
{
    private CpuBuffer _x = null!;
    private QuantizedActivations _into = null!;

    /// <summary>Takes x, whose shape <paramref name="into"/> already holds (<see
    /// cref="QuantizedActivations.SetShape"/>).</summary>
    public QuantizeJob Set(CpuBuffer x, QuantizedActivations into)
    {
        (_x, _into) = (x, into);
        return this;
    }

    public void Execute(int begin, int end, int worker) => _into.QuantizeRows(_x.Data, begin, end);
}
