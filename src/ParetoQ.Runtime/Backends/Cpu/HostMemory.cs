using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Backends.Cpu;

/// <summary>
/// A weight of the CPU backends: the memory-mapped tensor itself, read in place. A backend whose kernels read tile
/// pairs reorders a resident matmul weight's codes in place once (<see cref="TilePairs"/>); a backend whose kernels
/// do not, given a tensor another model on the same open file already reordered, reads its own file-order copy.
/// </summary>
internal sealed unsafe class CpuWeight : BackendWeight
{
    public readonly PackedMatrix Packed;   // valid when IsPacked
    public readonly bool IsPacked;
    private readonly byte[]? _fileOrder;   // pinned copy of a tensor paired by another backend

    public CpuWeight(PqTensor tensor, int rows, int cols, bool pairTiles = false) : base(tensor, rows, cols)
    {
        IsPacked = WeightFormats.IsPacked(tensor.Format);
        if (!IsPacked) return;
        var layout = new PackedLayout(tensor.Format, rows, cols);
        if (pairTiles && !tensor.TilesPaired && tensor.IsPrivate && TilePairs.Supports(layout))
            tensor.PairTiles(layout);
        if (!tensor.TilesPaired)
        {
            Packed = new PackedMatrix(layout, tensor.Pointer);
            return;
        }
        if (pairTiles)
        {
            Packed = new PackedMatrix(layout, tensor.Pointer, pairedTiles: true);
            return;
        }
        _fileOrder = GC.AllocateArray<byte>(checked((int)tensor.Length), pinned: true);
        tensor.Bytes.CopyTo(_fileOrder);
        byte* copy = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_fileOrder));
        TilePairs.Unpair(layout, copy);
        Packed = new PackedMatrix(layout, copy);
    }

    /// <summary>The bytes in file order (the tensor's, or the copy).</summary>
    public ReadOnlySpan<byte> Data => _fileOrder ?? Tensor.Data;

    /// <summary>Units of parallel work: tiles of 4 rows, for packed and float formats alike.</summary>
    public int Tiles => (Rows + PackedLayout.TileRows - 1) / PackedLayout.TileRows;
}

/// <summary>An activation buffer of the CPU backends: pinned, so kernels can hold raw pointers to it.</summary>
internal sealed unsafe class CpuBuffer(int length) : BackendBuffer(length)
{
    public readonly float[] Data = GC.AllocateArray<float>(length, pinned: true);
    public float* Pointer => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Data));
}
