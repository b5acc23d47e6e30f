using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Trainer;

/// <summary>
/// The trainer's float matrix multiply, C[m, n] (+)= A[m, k]·B[k, n] over row-major arrays: a register tile of 4 rows ×
/// 2 vectors of C (one broadcast of A and two loads of B per 8 or 16 multiply-adds), column panels of C split over a
/// persistent <see cref="WorkerPool"/>, k in blocks so each panel's slice of B is reused from L1 by every row block.
/// <see cref="Ops{T}"/> routes its float matmuls here and keeps its generic loops as the reference (the tests run them
/// in double). Allocates nothing after warm-up.
/// </summary>
public sealed unsafe class Gemm : IParallelJob
{
    private static Gemm? s_shared;
    private static readonly object s_lock = new();

    /// <summary>The pool all training matmuls use; <see cref="UseThreads"/> sets its size (default: one per
    /// core).</summary>
    public static Gemm Shared
    {
        get
        {
            lock (s_lock) return s_shared ??= new Gemm(0);
        }
    }

    public static void UseThreads(int threads)
    {
        lock (s_lock)
        {
            s_shared?._pool.Dispose();
            s_shared = new Gemm(threads);
        }
    }

    private readonly WorkerPool _pool;
    private float* _a, _b, _c;
    private int _m, _n, _k;
    private bool _accumulate;

    private Gemm(int threads) => _pool = new WorkerPool(threads);

    public int Threads => _pool.Threads;

    /// <summary>C = A·B, or C += A·B when <paramref name="accumulate"/>; A [m, k], B [k, n], C [m, n].</summary>
    public void Multiply(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k,
        bool accumulate)
    {
        if (a.Length < (long)m * k || b.Length < (long)k * n
            || c.Length < (long)m * n) throw new ArgumentException($"buffers too small for [{m}×{k}]·[{k}×{n}]");
        lock (this) // one multiply at a time per pool; the trainer runs one model step at a time
        {
            fixed (float* pa = a, pb = b, pc = c)
            {
                _a = pa;
                _b = pb;
                _c = pc;
                (_m, _n, _k, _accumulate) = (m, n, k, accumulate);
                _pool.Run(this, (n + PanelWidth - 1) / PanelWidth);
                _a = _b = _c = null;
            }
        }
    }

    private static int PanelWidth => 2 * Vector<float>.Count;
    // rows of a B panel per pass: PanelWidth × 256 floats stay in L1 while every row block of A passes
    private const int KBlock = 256;

    /// <summary>
    /// Column panels [begin, end) of C. Each panel is done in k-blocks, and within a k-block every 4-row block of A
    /// runs against the same slice of B, which stays in L1; A's k-block (m × 256 floats) stays in L2.
    /// </summary>
    public void Execute(int begin, int end, int worker)
    {
        int width = PanelWidth;
        for (int panel = begin; panel < end; panel++)
        {
            int j = panel * width, columns = Math.Min(width, _n - j);
            for (int k0 = 0; k0 < _k; k0 += KBlock)
            {
                int k1 = Math.Min(_k, k0 + KBlock);
                bool add = _accumulate || k0 > 0;
                int r = 0;
                if (columns == width)
                    for (; r + 4 <= _m; r += 4) Tile4(r, j, k0, k1, add);
                // tail rows, or every row of a partial last panel
                for (; r < _m; r++) Narrow(r, j, columns, k0, k1, add);
            }
        }
    }

    // 4 rows × 2 vectors of C, accumulated over k0..k1.
    private void Tile4(int r0, int j, int k0, int k1, bool add)
    {
        int n = _n, k = _k, width = Vector<float>.Count;
        float* a0 = _a + (long)r0 * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
        Vector<float> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default, s21 = default,
            s30 = default, s31 = default;
        float* bp = _b + (long)k0 * n + j;
        for (int kk = k0; kk < k1; kk++, bp += n)
        {
            var b0 = Unsafe.ReadUnaligned<Vector<float>>(bp);
            var b1 = Unsafe.ReadUnaligned<Vector<float>>(bp + width);
            var x = new Vector<float>(a0[kk]); s00 = Vector.FusedMultiplyAdd(x, b0,
                s00); s01 = Vector.FusedMultiplyAdd(x, b1, s01);
            x = new Vector<float>(a1[kk]); s10 = Vector.FusedMultiplyAdd(x, b0, s10); s11 = Vector.FusedMultiplyAdd(x,
                b1, s11);
            x = new Vector<float>(a2[kk]); s20 = Vector.FusedMultiplyAdd(x, b0, s20); s21 = Vector.FusedMultiplyAdd(x,
                b1, s21);
            x = new Vector<float>(a3[kk]); s30 = Vector.FusedMultiplyAdd(x, b0, s30); s31 = Vector.FusedMultiplyAdd(x,
                b1, s31);
        }
        float* c0 = _c + (long)r0 * n + j;
        Store(c0, s00, s01, width, add);
        Store(c0 + n, s10, s11, width, add);
        Store(c0 + 2 * n, s20, s21, width, add);
        Store(c0 + 3 * n, s30, s31, width, add);
    }

    // One row of C over `columns` (≤ one panel) columns: the tails of rows and of columns.
    private void Narrow(int r, int j, int columns, int k0, int k1, bool add)
    {
        int n = _n, k = _k;
        float* ar = _a + (long)r * k, cr = _c + (long)r * n + j;
        for (int q = 0; q < columns; q++)
        {
            float s = 0;
            float* bp = _b + (long)k0 * n + j + q;
            for (int kk = k0; kk < k1; kk++, bp += n) s += ar[kk] * *bp;
            cr[q] = add ? cr[q] + s : s;
        }
    }

    private static void Store(float* c, Vector<float> lo, Vector<float> hi, int width, bool add)
    {
        if (add)
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

    /// <summary>A per-thread scratch buffer of at least <paramref name="length"/> floats, grown only when too
    /// small.</summary>
    public static float[] Scratch(ref float[]? buffer, long length)
    {
        if (buffer is null || buffer.Length < length) buffer = GC.AllocateUninitializedArray<float>((int)length);
        return buffer;
    }

    internal static ReadOnlySpan<float> AsFloats<T>(ReadOnlySpan<T> span) where T : struct => MemoryMarshal.Cast<T,
        float>(span);
    internal static Span<float> AsFloats<T>(Span<T> span) where T : struct => MemoryMarshal.Cast<T, float>(span);
}
