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

    /// <summary>
    /// The codes were reordered in place into <see cref="Kernels.TilePairs"/> order by a backend whose kernels read it
    /// (the file's bytes are then no longer file order; only a resident file's private memory is ever reordered).
    /// </summary>
    public bool TilesPaired { get; private set; }

    /// <summary>Whether the bytes are this process's own memory (a resident file), which may be reordered.</summary>
    public bool IsPrivate => _owner.Memory == WeightMemory.Resident;

    /// <summary>Reorders the codes into tile pairs once; later calls find them paired. Private memory only.</summary>
    internal void PairTiles(in PackedLayout layout)
    {
        _owner.ThrowIfDisposed();
        if (!IsPrivate) throw new InvalidOperationException($"{Name}: a mapped file is read-only; only resident " +
            $"weights are reordered");
        lock (this)
        {
            if (TilesPaired) return;
            Kernels.TilePairs.Pair(layout, _data);
            TilesPaired = true;
        }
    }

    /// <summary>The tensor's bytes inside the memory map (64-byte aligned), in file order.</summary>
    /// <exception cref="InvalidOperationException">A model on this open file reordered the codes
    /// (<see cref="TilesPaired"/>): reading them as file order would be a silent wrong answer.</exception>
    public ReadOnlySpan<byte> Data
    {
        get
        {
            if (TilesPaired) throw new InvalidOperationException($"{Name}: a model loaded on this open file " +
                "reordered its codes for the AVX-512 kernels; open the file again (or map it: WeightMemory.Mapped) " +
                "to read its bytes");
            return Bytes;
        }
    }

    /// <summary>The bytes as they are now, file order or paired.</summary>
    internal ReadOnlySpan<byte> Bytes
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
