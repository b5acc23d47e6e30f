using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// Inner loops of attention over an int8 KV cache: the integer q·k dot product and the int8 value accumulation.
/// Shapes are one head vector (head_dim), a multiple of 16 on the vector paths with a scalar tail.
/// </summary>
public static unsafe class AttentionKernels
{
    /// <summary>Σ a[i]·b[i] of two int8 vectors, exact (int32).</summary>
    public static int DotInt8(sbyte* a, sbyte* b, int n)
    {
        int i = 0, sum = 0;
        if (Avx2.IsSupported)
        {
            var acc = Vector256<int>.Zero;
            for (; i + 16 <= n; i += 16)
                acc += Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Vector128.Load(a + i)), Avx2.ConvertToVector256Int16(Vector128.Load(b + i)));
            sum = Vector256.Sum(acc);
        }
        else if (Dp.IsSupported)
        {
            var acc = Vector128<int>.Zero;
            for (; i + 16 <= n; i += 16) acc = Dp.DotProduct(acc, Vector128.Load(a + i), Vector128.Load(b + i));
            sum = Vector128.Sum(acc);
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>acc[i] += weight · v[i] for an int8 vector v.</summary>
    public static void AccumulateInt8(float* acc, sbyte* v, float weight, int n)
    {
        int i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            var w = Vector128.Create(weight);
            for (; i + 16 <= n; i += 16)
            {
                var s = Vector128.Load(v + i);
                var (lo, hi) = Vector128.Widen(s);
                var (a, b) = Vector128.Widen(lo);
                var (c, d) = Vector128.Widen(hi);
                Add(acc + i, Vector128.ConvertToSingle(a), w);
                Add(acc + i + 4, Vector128.ConvertToSingle(b), w);
                Add(acc + i + 8, Vector128.ConvertToSingle(c), w);
                Add(acc + i + 12, Vector128.ConvertToSingle(d), w);
            }
        }
        for (; i < n; i++) acc[i] += weight * v[i];
    }

    /// <summary>acc[i] += weight · v[i] for an fp32 vector v.</summary>
    public static void Accumulate(float* acc, float* v, float weight, int n)
    {
        int i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            var w = Vector128.Create(weight);
            for (; i + 4 <= n; i += 4) Add(acc + i, Vector128.Load(v + i), w);
        }
        for (; i < n; i++) acc[i] += weight * v[i];
    }

    /// <summary>x[i] *= factor.</summary>
    public static void Scale(float* x, float factor, int n)
    {
        int i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            var f = Vector128.Create(factor);
            for (; i + 4 <= n; i += 4) (Vector128.Load(x + i) * f).Store(x + i);
        }
        for (; i < n; i++) x[i] *= factor;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Add(float* acc, Vector128<float> v, Vector128<float> w) => (Vector128.Load(acc) + v * w).Store(acc);
}
