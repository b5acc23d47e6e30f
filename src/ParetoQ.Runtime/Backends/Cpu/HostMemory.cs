using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Backends.Cpu;

/// <summary>A weight of the CPU backends: the memory-mapped tensor itself, read in place.</summary>
internal sealed unsafe class CpuWeight : BackendWeight
{
    public readonly PackedMatrix Packed;   // valid when IsPacked
    public readonly bool IsPacked;

    public CpuWeight(PqTensor tensor, int rows, int cols) : base(tensor, rows, cols)
    {
        IsPacked = WeightFormats.IsPacked(tensor.Format);
        if (IsPacked) Packed = new PackedMatrix(new PackedLayout(tensor.Format, rows, cols), tensor.Pointer);
    }

    /// <summary>Units of parallel work: tiles of 4 rows, for packed and float formats alike.</summary>
    public int Tiles => (Rows + PackedLayout.TileRows - 1) / PackedLayout.TileRows;
}

/// <summary>An activation buffer of the CPU backends: pinned, so kernels can hold raw pointers to it.</summary>
internal sealed unsafe class CpuBuffer(int length) : BackendBuffer(length)
{
    public readonly float[] Data = GC.AllocateArray<float>(length, pinned: true);
    public float* Pointer => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Data));
}
