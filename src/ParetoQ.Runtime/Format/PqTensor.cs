using System.Runtime.InteropServices;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Format;

/// <summary>One validated tensor of an open <see cref="PqFile"/>: a zero-copy view into the memory map.</summary>
public sealed unsafe class PqTensor
{
    private readonly PqFile _owner;
    private readonly byte* _data;

    internal PqTensor(PqFile owner, string name, WeightFormat format, int[] shape, long offset, long length,
        ulong checksum, byte* data)
    {
        _owner = owner;
        Name = name;
        Format = format;
        Shape = shape;
        Offset = offset;
        Length = length;
        Checksum = checksum;
        _data = data;
    }

    public string Name { get; }
    public WeightFormat Format { get; }
    public IReadOnlyList<int> Shape { get; }
    /// <summary>Offset from the start of the data section (a multiple of 64).</summary>
    public long Offset { get; }
    public long Length { get; }
    /// <summary>XxHash3-64 of the bytes.</summary>
    public ulong Checksum { get; }

    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (int d in Shape) n *= d;
            return n;
        }
    }

    /// <summary>The tensor's bytes inside the memory map (64-byte aligned).</summary>
    public ReadOnlySpan<byte> Data
    {
        get
        {
            _owner.ThrowIfDisposed();
            return new ReadOnlySpan<byte>(_data, (int)Length);
        }
    }

    /// <summary>Raw pointer for kernels; valid while the owning <see cref="PqFile"/> is open.</summary>
    public byte* Pointer
    {
        get
        {
            _owner.ThrowIfDisposed();
            return _data;
        }
    }

    /// <summary>An f32 tensor's values, zero-copy (the file is little-endian, as is every supported CPU).</summary>
    public ReadOnlySpan<float> AsFloats()
    {
        if (Format != WeightFormat.F32) throw new PqFormatException(_owner.Path, Name,
            $"is {WeightFormats.Name(Format)}, expected f32");
        return MemoryMarshal.Cast<byte, float>(Data);
    }

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    public override string ToString() => $"{Name} {WeightFormats.Name(Format)} {ShapeText} @{Offset} +{Length}";
}
