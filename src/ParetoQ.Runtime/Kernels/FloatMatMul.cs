using System.Numerics;
using System.Runtime.InteropServices;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// The fast path's matmul for dense f32/f16/bf16 weights (full-precision baselines, unquantized heads): y = x · Wᵀ over
/// rows [rowBegin, rowEnd), with portable vectors (AVX2/AVX-512 on x64, NEON on arm64). f32 rows are read in place;
/// f16 and bf16 rows are widened once (<see cref="WidenRow"/>) into the caller's scratch row and then serve every
/// token. Sums run in a different order than <see cref="ScalarKernels.MatMulRows"/>, its reference, so results agree to
/// rounding.
/// </summary>
public static class FloatMatMul
{
    /// <summary><paramref name="rowScratch"/> holds one widened row (cols values).</summary>
    public static void Rows(WeightFormat format, int rows, int cols, ReadOnlySpan<byte> w, ReadOnlySpan<float> x,
        int tokens, int rowBegin, int rowEnd, Span<float> rowScratch, Span<float> y)
    {
        if (!WeightFormats.IsFloat(format)) throw new ArgumentException($"{WeightFormats.Name(format)} is not a dense float format", nameof(format));
        if ((long)rows * cols * FloatCodec.ElementBytes(format) > w.Length) throw new ArgumentException($"weights hold {w.Length} bytes, fewer than [{rows}, {cols}] {WeightFormats.Name(format)}", nameof(w));
        if ((long)tokens * cols > x.Length
            || (long)tokens * rows > y.Length) throw new ArgumentException("x or y is shorter than tokens × width");
        for (int r = rowBegin; r < rowEnd; r++)
        {
            ReadOnlySpan<float> row;
            if (format == WeightFormat.F32) row = MemoryMarshal.Cast<byte,
                float>(w.Slice((int)((long)r * cols * 4), cols * 4));
            else
            {
                WidenRow(format, w, (long)r * cols, rowScratch[..cols]);
                row = rowScratch[..cols];
            }
            for (int t = 0; t < tokens; t++) y[t * rows + r] = Dot(row, x.Slice(t * cols, cols));
        }
    }

    /// <summary>
    /// Elements [start, start + dst.Length) of an f16 or bf16 tensor as fp32, vectorized, exactly the values of
    /// <see cref="FloatCodec.Decode"/> (its reference). bf16 is the top half of fp32. f16 moves its exponent and
    /// mantissa into place and rescales by 2^112, which also makes subnormals exact; Inf/NaN then get fp32's all-ones
    /// exponent.
    /// </summary>
    public static void WidenRow(WeightFormat format, ReadOnlySpan<byte> w, long start, Span<float> dst)
    {
        if (format is not (WeightFormat.F16
            or WeightFormat.BF16)) throw new ArgumentException($"{WeightFormats.Name(format)} is not a 16-bit float format", nameof(format));
        if (!BitConverter.IsLittleEndian)
        {
            FloatCodec.Decode(format, w, start, dst);
            return;
        }
        var halves = MemoryMarshal.Cast<byte, ushort>(w.Slice(checked((int)(start * 2)), checked(dst.Length * 2)));
        var bits = MemoryMarshal.Cast<float, uint>(dst);
        bool bf16 = format == WeightFormat.BF16;
        int width = Vector<ushort>.Count, i = 0;
        for (; i + width <= halves.Length; i += width)
        {
            Vector.Widen(new Vector<ushort>(halves.Slice(i)), out var low, out var high);
            (bf16 ? low << 16 : HalfToSingleBits(low)).CopyTo(bits.Slice(i));
            (bf16 ? high << 16 : HalfToSingleBits(high)).CopyTo(bits.Slice(i + width / 2));
        }
        FloatCodec.Decode(format, w, start + i, dst[i..]); // the tail
    }

    private static Vector<uint> HalfToSingleBits(Vector<uint> half)
    {
        var magnitude = Vector.AsVectorSingle((half & new Vector<uint>(0x7FFF)) << 13) * new Vector<float>(TwoPow112);
        var infOrNaN = Vector.AsVectorUInt32(Vector.GreaterThanOrEqual(magnitude,
            new Vector<float>(65536f))) & new Vector<uint>(0x7F800000);
        return Vector.AsVectorUInt32(magnitude) | infOrNaN | ((half & new Vector<uint>(0x8000)) << 16);
    }

    private static readonly float TwoPow112 = BitConverter.UInt32BitsToSingle(0x77800000);

    /// <summary>Σ a[i]·b[i] with two vector accumulators and a scalar tail.</summary>
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        int width = Vector<float>.Count, i = 0;
        Vector<float> s0 = Vector<float>.Zero, s1 = Vector<float>.Zero;
        for (; i + 2 * width <= a.Length; i += 2 * width)
        {
            s0 = Vector.FusedMultiplyAdd(new Vector<float>(a.Slice(i)), new Vector<float>(b.Slice(i)), s0);
            s1 = Vector.FusedMultiplyAdd(new Vector<float>(a.Slice(i + width)), new Vector<float>(b.Slice(i + width)),
                s1);
        }
        float sum = Vector.Sum(s0 + s1);
        for (; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }
}
