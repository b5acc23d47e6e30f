using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Trainer;

/// <summary>
/// The trainer's float matrix multiply, C[m, n] (+)= A[m, k]·B[k, n] over row-major arrays: a register tile of 4 rows ×
/// 2 vectors of C held across the whole k loop (one broadcast of A and two loads of B per 8 or 16 multiply-adds), rows
/// split over a persistent <see cref="WorkerPool"/>. <see cref="Ops{T}"/> routes its float matmuls here and keeps its
/// generic loops as the reference (the tests run them in double). Allocates nothing after warm-up.
/// </summary>
public sealed unsafe class Gemm : IParallelJob
{
    private static Gemm? s_shared;
    private static readonly object s_lock = new();

    /// <summary>The pool all training matmuls use; <see cref="UseThreads"/> sets its size (default: one per core).</summary>
    public static Gemm Shared
    {
        get
        {
            lock (s_lock) return s_shared ??= new Gemm(WorkerPool.DefaultThreads);
        }
    }

    public static void UseThreads(int threads)
    {
        lock (s_lock)
        {
            s_shared?._pool.Dispose();
            s_shared = new Gemm(threads == 0 ? WorkerPool.DefaultThreads : threads);
        }
    }

    private readonly WorkerPool _pool;
    private float* _a, _b, _c;
    private int _m, _n, _k;
    private bool _accumulate;

    private Gemm(int threads) => _pool = new WorkerPool(threads);

    public int Threads => _pool.Threads;

    /// <summary>C = A·B, or C += A·B when <paramref name="accumulate"/>; A [m, k], B [k, n], C [m, n].</summary>
    public void Multiply(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k, bool accumulate)
    {
        if (a.Length < (long)m * k || b.Length < (long)k * n || c.Length < (long)m * n) throw new ArgumentException($"buffers too small for [{m}×{k}]·[{k}×{n}]");
        lock (this) // one multiply at a time per pool; the trainer runs one model step at a time
        {
            fixed (float* pa = a, pb = b, pc = c)
            {
                _a = pa;
                _b = pb;
                _c = pc;
                (_m, _n, _k, _accumulate) = (m, n, k, accumulate);
                _pool.Run(this, (m + 3) / 4);
                _a = _b = _c = null;
            }
        }
    }

    /// <summary>Row blocks [begin, end) of 4 rows of C (the last block may be short).</summary>
    public void Execute(int begin, int end)
    {
        for (int block = begin; block < end; block++)
        {
            int r0 = block * 4;
            if (r0 + 4 <= _m) Rows4(r0);
            else for (int r = r0; r < _m; r++) Row1(r);
        }
    }

    private void Rows4(int r0)
    {
        int n = _n, k = _k, width = Vector<float>.Count, j = 0;
        float* a0 = _a + (long)r0 * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
        float* c0 = _c + (long)r0 * n, c1 = c0 + n, c2 = c1 + n, c3 = c2 + n;
        for (; j <= n - 2 * width; j += 2 * width)
        {
            Vector<float> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default, s21 = default, s30 = default, s31 = default;
            float* bp = _b + j;
            for (int kk = 0; kk < k; kk++, bp += n)
            {
                var b0 = Unsafe.ReadUnaligned<Vector<float>>(bp);
                var b1 = Unsafe.ReadUnaligned<Vector<float>>(bp + width);
                var x = new Vector<float>(a0[kk]); s00 = Vector.FusedMultiplyAdd(x, b0, s00); s01 = Vector.FusedMultiplyAdd(x, b1, s01);
                x = new Vector<float>(a1[kk]); s10 = Vector.FusedMultiplyAdd(x, b0, s10); s11 = Vector.FusedMultiplyAdd(x, b1, s11);
                x = new Vector<float>(a2[kk]); s20 = Vector.FusedMultiplyAdd(x, b0, s20); s21 = Vector.FusedMultiplyAdd(x, b1, s21);
                x = new Vector<float>(a3[kk]); s30 = Vector.FusedMultiplyAdd(x, b0, s30); s31 = Vector.FusedMultiplyAdd(x, b1, s31);
            }
            Store(c0 + j, s00, s01, width);
            Store(c1 + j, s10, s11, width);
            Store(c2 + j, s20, s21, width);
            Store(c3 + j, s30, s31, width);
        }
        for (; j < n; j++)
        {
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            float* bp = _b + j;
            for (int kk = 0; kk < k; kk++, bp += n)
            {
                float bv = *bp;
                s0 += a0[kk] * bv; s1 += a1[kk] * bv; s2 += a2[kk] * bv; s3 += a3[kk] * bv;
            }
            c0[j] = _accumulate ? c0[j] + s0 : s0;
            c1[j] = _accumulate ? c1[j] + s1 : s1;
            c2[j] = _accumulate ? c2[j] + s2 : s2;
            c3[j] = _accumulate ? c3[j] + s3 : s3;
        }
    }

    private void Row1(int r)
    {
        int n = _n, k = _k, width = Vector<float>.Count, j = 0;
        float* ar = _a + (long)r * k, cr = _c + (long)r * n;
        for (; j <= n - width; j += width)
        {
            Vector<float> s = default;
            float* bp = _b + j;
            for (int kk = 0; kk < k; kk++, bp += n) s = Vector.FusedMultiplyAdd(new Vector<float>(ar[kk]), Unsafe.ReadUnaligned<Vector<float>>(bp), s);
            if (_accumulate) s += Unsafe.ReadUnaligned<Vector<float>>(cr + j);
            Unsafe.WriteUnaligned(cr + j, s);
        }
        for (; j < n; j++)
        {
            float s = 0;
            for (int kk = 0; kk < k; kk++) s += ar[kk] * _b[(long)kk * n + j];
            cr[j] = _accumulate ? cr[j] + s : s;
        }
    }

    private void Store(float* c, Vector<float> lo, Vector<float> hi, int width)
    {
        if (_accumulate)
        {
            lo += Unsafe.ReadUnaligned<Vector<float>>(c);
            hi += Unsafe.ReadUnaligned<Vector<float>>(c + width);
        }
        Unsafe.WriteUnaligned(c, lo);
        Unsafe.WriteUnaligned(c + width, hi);
    }

    /// <summary>dst [cols, rows] = srcᵀ, src [rows, cols]; in 32×32 tiles so both sides stay in cache.</summary>
    public static void Transpose(ReadOnlySpan<float> src, Span<float> dst, int rows, int cols)
    {
        const int tile = 32;
        for (int r0 = 0; r0 < rows; r0 += tile)
            for (int c0 = 0; c0 < cols; c0 += tile)
                for (int r = r0; r < Math.Min(rows, r0 + tile); r++)
                    for (int c = c0; c < Math.Min(cols, c0 + tile); c++)
                        dst[c * rows + r] = src[r * cols + c];
    }

    /// <summary>A per-thread scratch buffer of at least <paramref name="length"/> floats, grown only when too small.</summary>
    public static float[] Scratch(ref float[]? buffer, long length)
    {
        if (buffer is null || buffer.Length < length) buffer = GC.AllocateUninitializedArray<float>((int)length);
        return buffer;
    }

    internal static ReadOnlySpan<float> AsFloats<T>(ReadOnlySpan<T> span) where T : struct => MemoryMarshal.Cast<T, float>(span);
    internal static Span<float> AsFloats<T>(Span<T> span) where T : struct => MemoryMarshal.Cast<T, float>(span);
}
