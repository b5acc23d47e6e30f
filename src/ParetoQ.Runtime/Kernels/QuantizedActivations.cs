using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// Activations quantized to int8 per token for the integer kernels: x ≈ Scale[t] · Values[t, k], symmetric, with
/// Scale = max|x| / 127 so values lie in −127..127 (never −128, which the sign tricks of some paths could not negate).
/// Rows are zero-padded to <see cref="Stride"/> (a multiple of 128, the widest block of any packed format) and the sums
/// of every 32 values are kept, so kernels can fix up the unsigned weight-code offsets (REFERENCE.md §1).
/// The buffers are native and 64-byte aligned, allocated once for the largest input and reused: quantizing allocates
/// nothing.
/// </summary>
public sealed unsafe class QuantizedActivations : IDisposable
{
    public const int StrideMultiple = 128;
    public const int SumGroup = 32;

    /// <summary>Copies of each 16-value block in <see cref="Wide"/>.</summary>
    public const int WideCopies = 4;

    private sbyte* _values;       // (capacity tokens, Stride)
    private sbyte* _wide;         // (capacity tokens, Stride / 16, 4 copies, 16)
    private float* _scales;       // (capacity tokens)
    private int* _sums;           // (capacity tokens): Σ of each token's values
    private int* _groupSums;      // (capacity tokens, Stride / 32)
    private readonly int _capacityTokens, _capacityStride;

    /// <summary>Room for (tokens, cols) activations, allocated here once.</summary>
    public QuantizedActivations(int capacityTokens, int capacityCols)
    {
        if (capacityTokens <= 0 || capacityCols <= 0) throw new ArgumentOutOfRangeException(nameof(capacityTokens),
            $"cannot hold ({capacityTokens}, {capacityCols}) activations");
        long stride = StrideOf(capacityCols), bytes = capacityTokens * stride;
        if (bytes > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(capacityTokens),
            $"({capacityTokens}, {capacityCols}) activations are too large");
        _capacityTokens = capacityTokens;
        _capacityStride = (int)stride;
        _values = (sbyte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        if (HasWide) _wide = (sbyte*)NativeMemory.AlignedAlloc((nuint)(bytes * WideCopies), 64);
        _groupSums = (int*)NativeMemory.AlignedAlloc((nuint)(bytes / SumGroup * sizeof(int)), 64);
        _scales = (float*)NativeMemory.AlignedAlloc((nuint)(capacityTokens * sizeof(float)), 64);
        _sums = (int*)NativeMemory.AlignedAlloc((nuint)(capacityTokens * sizeof(int)), 64);
    }

    private static long StrideOf(int cols) => ((long)cols + StrideMultiple - 1) / StrideMultiple * StrideMultiple;

    public int Tokens { get; private set; }
    public int Cols { get; private set; }
    /// <summary>Padded length of one token's row.</summary>
    public int Stride { get; private set; }
    public int GroupsPerToken => Stride / SumGroup;

    public sbyte* Values => _values;
    /// <summary>
    /// The values again with every 16-value block written 4 times in a row (64 bytes), so the x86 kernels read a block
    /// already broadcast to every 128-bit lane with a plain load: a broadcast from memory costs a shuffle uop on Zen
    /// 4/5, and one per 16 weights of 4 rows held the AVX-512 GEMV to 0.75 of the same loop on wide activations.
    /// Token t's row starts at t · Stride · 4. Only the x86 paths read it, so it exists only on x86
    /// (<see cref="HasWide"/>; null elsewhere): an Arm core never pays for the copy.
    /// </summary>
    public sbyte* Wide => _wide;

    /// <summary>Whether <see cref="Wide"/> is kept: in x86 processes, where the kernel paths that read it run.</summary>
    public static bool HasWide => X86Base.IsSupported;
    public float* Scales => _scales;
    /// <summary>(tokens, Stride / 32) sums of 32 consecutive values.</summary>
    public int* GroupSums => _groupSums;

    public ReadOnlySpan<sbyte> Row(int token) => new(_values + (long)token * Stride, Stride);

    /// <summary>Sum of the values of one token (all groups).</summary>
    public int Sum(int token) => _sums[token];

    /// <summary>Quantizes x (tokens, cols) row by row.</summary>
    public void Quantize(ReadOnlySpan<float> x, int tokens, int cols)
    {
        SetShape(x.Length, tokens, cols);
        QuantizeRows(x, 0, tokens);
    }

    /// <summary>
    /// Takes the shape of the next input, x (tokens, cols) of <paramref name="length"/> floats, whose rows
    /// <see cref="QuantizeRows"/> then fills (from several threads at once, each its own rows).
    /// </summary>
    public void SetShape(int length, int tokens, int cols)
    {
        if (tokens <= 0 || cols <= 0) throw new ArgumentOutOfRangeException(nameof(tokens),
            $"cannot quantize ({tokens}, {cols}) activations");
        if (length < (long)tokens * cols) throw new ArgumentException($"x holds {length} floats, fewer than ({tokens}, {cols})", nameof(length));
        int stride = (int)StrideOf(cols);
        if (tokens > _capacityTokens || stride > _capacityStride)
            throw new ArgumentOutOfRangeException(nameof(tokens),
                $"({tokens}, {cols}) activations exceed the ({_capacityTokens}, {_capacityStride}) this buffer holds");
        Tokens = tokens;
        Cols = cols;
        Stride = stride;
    }

    /// <summary>Rows [begin, end) of the input whose shape <see cref="SetShape"/> took.</summary>
    public void QuantizeRows(ReadOnlySpan<float> x, int begin, int end)
    {
        int cols = Cols, stride = Stride;
        for (int t = begin; t < end; t++)
        {
            var src = x.Slice(t * cols, cols);
            var dst = new Span<sbyte>(_values + (long)t * stride, stride);
            _scales[t] = QuantizeRow(src, dst);
            if (HasWide)
            {
                sbyte* wide = _wide + (long)t * stride * WideCopies;
                for (int b = 0; b < stride; b += 16)
                {
                    // One 64-byte store of the broadcast block where the vectors are that wide: four 16-byte stores
                    // per block were half of quantizing a prefill chunk.
                    var block = Vector128.Load(_values + (long)t * stride + b);
                    if (Vector512.IsHardwareAccelerated)
                    {
                        var pair = Vector256.Create(block, block);
                        Vector512.Create(pair, pair).Store(wide + (long)b * WideCopies);
                    }
                    else
                        for (int c = 0; c < WideCopies; c++) block.Store(wide + (long)b * WideCopies + c * 16);
                }
            }
            int* sums = _groupSums + (long)t * (stride / SumGroup);
            int total = 0;
            for (int g = 0; g < stride / SumGroup; g++)
            {
                int s = GroupSum(_values + (long)t * stride + g * SumGroup);
                sums[g] = s;
                total += s;
            }
            _sums[t] = total;
        }
    }

    // Σ of 32 int8 values: exact in int16 (at most 32 · 128), widened twice with vectors; the sum is the same on every
    // CPU.
    private static int GroupSum(sbyte* v)
    {
        if (!Vector128.IsHardwareAccelerated)
        {
            int s = 0;
            for (int i = 0; i < SumGroup; i++) s += v[i];
            return s;
        }
        var (a, b) = Vector128.Widen(Vector128.Load(v));
        var (c, d) = Vector128.Widen(Vector128.Load(v + 16));
        return Vector128.Sum(a + b + (c + d));
    }

    /// <summary>
    /// One token: dst[k] = round(x[k] · 127 / max|x|) (half to even), zero past x.Length; returns the scale max|x| /
    /// 127. The vector and scalar parts compute the same products and roundings, so the result never depends on the
    /// CPU.
    /// </summary>
    public static float QuantizeRow(ReadOnlySpan<float> x, Span<sbyte> dst)
    {
        float absMax = 0;
        int k = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            // Two chains: max is exact in any order.
            Vector256<float> m0 = default, m1 = default;
            for (; k + 16 <= x.Length; k += 16)
            {
                m0 = Vector256.Max(m0, Vector256.Abs(Vector256.Create(x.Slice(k, 8))));
                m1 = Vector256.Max(m1, Vector256.Abs(Vector256.Create(x.Slice(k + 8, 8))));
            }
            var m = Vector256.Max(m0, m1);
            var h = Vector128.Max(m.GetLower(), m.GetUpper());
            absMax = MathF.Max(MathF.Max(h[0], h[1]), MathF.Max(h[2], h[3]));
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var m = Vector128<float>.Zero;
            for (; k + 4 <= x.Length; k += 4) m = Vector128.Max(m, Vector128.Abs(Vector128.Create(x.Slice(k, 4))));
            absMax = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
        }
        for (; k < x.Length; k++) absMax = MathF.Max(absMax, MathF.Abs(x[k]));
        dst.Clear();
        if (!float.IsFinite(absMax)) return float.NaN; // NaN or ∞ in x: the outputs become NaN, never a silent number
        if (absMax == 0) return 0;
        float inv = 127f / absMax;
        k = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vInv = Vector256.Create(inv);
            for (; k + 32 <= x.Length; k += 32)
            {
                var q0 = Vector256.ConvertToInt32(Vector256.Round(Vector256.Create(x.Slice(k, 8)) * vInv));
                var q1 = Vector256.ConvertToInt32(Vector256.Round(Vector256.Create(x.Slice(k + 8, 8)) * vInv));
                var q2 = Vector256.ConvertToInt32(Vector256.Round(Vector256.Create(x.Slice(k + 16, 8)) * vInv));
                var q3 = Vector256.ConvertToInt32(Vector256.Round(Vector256.Create(x.Slice(k + 24, 8)) * vInv));
                Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3)).CopyTo(dst.Slice(k, 32));
            }
        }
        if (Vector128.IsHardwareAccelerated)
        {
            var vInv = Vector128.Create(inv);
            for (; k + 16 <= x.Length; k += 16)
            {
                var q0 = Vector128.ConvertToInt32(Vector128.Round(Vector128.Create(x.Slice(k, 4)) * vInv));
                var q1 = Vector128.ConvertToInt32(Vector128.Round(Vector128.Create(x.Slice(k + 4, 4)) * vInv));
                var q2 = Vector128.ConvertToInt32(Vector128.Round(Vector128.Create(x.Slice(k + 8, 4)) * vInv));
                var q3 = Vector128.ConvertToInt32(Vector128.Round(Vector128.Create(x.Slice(k + 12, 4)) * vInv));
                Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3)).CopyTo(dst.Slice(k, 16));
            }
        }
        for (; k < x.Length; k++) dst[k] = (sbyte)(int)MathF.Round(x[k] * inv);
        return absMax / 127f;
    }

    private static void Free<T>(ref T* p) where T : unmanaged
    {
        if (p != null) NativeMemory.AlignedFree(p);
        p = null;
    }

    public void Dispose()
    {
        Free(ref _values);
        Free(ref _wide);
        Free(ref _groupSums);
        Free(ref _scales);
        Free(ref _sums);
        GC.SuppressFinalize(this);
    }

    ~QuantizedActivations() => Dispose();
}
