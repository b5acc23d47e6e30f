using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Backends.Cpu;

/// <summary>
/// KV cache in host memory: keys and values of kvHeads heads, capacity slots and headDim values, int8 with a scale and
/// zero point per (head, position), or fp32. Head-major, so the attention over one KV head streams one contiguous
/// block; int8 keys are in <see cref="Int8KvView"/>'s blocks of 8 positions, everything else (kvHeads, capacity,
/// headDim) rows. Position p lives in slot p for global layers and p mod capacity for ring (local) layers.
/// The int8 arrays are pinned, so the attention kernels read them through <see cref="View"/>.
/// </summary>
public sealed class CpuKvCache : BackendKvCache
{
    private readonly sbyte[] _k8 = [];                   // (kvHeads, key blocks) int8, Int8KvView's layout
    private readonly sbyte[] _v8 = [];                   // (kvHeads, capacity, hd) int8
    private readonly float[] _kScale = [], _vScale = [];  // (kvHeads, capacity)
    private readonly sbyte[] _kZero = [], _vZero = [];    // (kvHeads, capacity)
    private readonly float[] _k32 = [], _v32 = [];        // (kvHeads, capacity, hd) fp32

    public CpuKvCache(int capacity, int kvHeads, int headDim, KvCacheType type, bool ring)
        : base(capacity, kvHeads, headDim, type, ring)
    {
        long n = (long)capacity * kvHeads * headDim;
        if (type == KvCacheType.Int8)
        {
            int rows = checked(capacity * kvHeads);
            _k8 = GC.AllocateArray<sbyte>(checked((int)Int8KvView.KeyBytes(capacity, kvHeads, headDim)), pinned: true);
            _v8 = GC.AllocateArray<sbyte>(checked((int)n), pinned: true);
            _kScale = GC.AllocateArray<float>(rows, pinned: true);
            _vScale = GC.AllocateArray<float>(rows, pinned: true);
            _kZero = GC.AllocateArray<sbyte>(rows, pinned: true);
            _vZero = GC.AllocateArray<sbyte>(rows, pinned: true);
        }
        else
        {
            _k32 = new float[n];
            _v32 = new float[n];
        }
    }

    public override long Bytes => Type == KvCacheType.Int8
        ? _k8.Length + _v8.Length + 2L * (_kScale.Length * sizeof(float) + _kZero.Length)
        : 2L * _k32.Length * sizeof(float);

    private int Slot(int pos) => Ring ? pos % Capacity : pos;

    /// <summary>Index of (position, head) among the cached vectors, as <see cref="Int8KvView.Row"/>.</summary>
    private int Row(int pos, int head) => head * Capacity + Slot(pos);

    /// <summary>The int8 cache as the attention kernels read it.</summary>
    internal unsafe Int8KvView View
        => new(Pointer(_k8), Pointer(_v8), Pointer(_kScale), Pointer(_kZero), Pointer(_vScale), Pointer(_vZero),
            Capacity, KvHeads, HeadDim, Ring);

    private static unsafe T* Pointer<T>(T[] pinned) where T : unmanaged =>
        (T*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));

    /// <summary>Stores k, v (kvHeads·hd) of one position.</summary>
    public void Write(int pos, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        if (!Ring
            && pos >= Capacity) throw new InvalidOperationException($"position {pos} is past the KV cache capacity {Capacity}");
        int hd = HeadDim;
        Span<sbyte> key = Type == KvCacheType.Int8 ? stackalloc sbyte[hd] : default;
        for (int h = 0; h < KvHeads; h++)
        {
            int row = Row(pos, h);
            if (Type == KvCacheType.Int8)
            {
                (_kScale[row], _kZero[row]) = KvQuantizer.Quantize(k.Slice(h * hd, hd), key);
                View.StoreKey(h, Slot(pos), key);
                (_vScale[row], _vZero[row]) = KvQuantizer.Quantize(v.Slice(h * hd, hd), _v8.AsSpan(row * hd, hd));
            }
            else
            {
                k.Slice(h * hd, hd).CopyTo(_k32.AsSpan(row * hd, hd));
                v.Slice(h * hd, hd).CopyTo(_v32.AsSpan(row * hd, hd));
            }
        }
    }

    /// <summary>q · k[pos, head].</summary>
    public float DotKey(ReadOnlySpan<float> q, int pos, int head)
    {
        int row = Row(pos, head), hd = HeadDim;
        if (Type == KvCacheType.F32) return ScalarKernels.Dot(q, _k32.AsSpan(row * hd, hd));
        var view = View;
        float scale = _kScale[row];
        sbyte zero = _kZero[row];
        float sum = 0;
        unsafe
        {
            for (int i = 0; i < hd; i++)
                sum += q[i] * KvQuantizer.Dequantize(*view.KeyAt(head, Slot(pos), i), scale, zero);
        }
        return sum;
    }

    /// <summary>acc += p · v[pos, head].</summary>
    public void AccumulateValue(int pos, int head, float p, Span<float> acc)
    {
        int row = Row(pos, head), hd = HeadDim;
        if (Type == KvCacheType.F32)
        {
            var v = _v32.AsSpan(row * hd, hd);
            for (int i = 0; i < hd; i++) acc[i] += p * v[i];
            return;
        }
        var v8 = _v8.AsSpan(row * hd, hd);
        float scale = _vScale[row];
        sbyte zero = _vZero[row];
        for (int i = 0; i < hd; i++) acc[i] += p * KvQuantizer.Dequantize(v8[i], scale, zero);
    }
}
