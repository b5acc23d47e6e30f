using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Trainer;

/// <summary>
/// The trainer's float matrix multiply, C[m, n] (+)= A[m, k]·B[k, n] over row-major arrays: a register tile of 4 rows ×
/// 2 vectors of C (one broadcast of A and two loads of B per 8 or 16 multiply-adds), column panels of C split over a
/// persistent <see cref="WorkerPool"/>, k in blocks so each panel's slice of B is reused from L1 by every row block.
/// A may be stored transposed (a weight gradient from dy as it lies), and B may be stored transposed (a weight
/// [out, in] as it lies), where 4 × 4 dot products run along k; so no matmul copies a matrix into a transposed one.
/// <see cref="Ops{T}"/> routes its float matmuls here and keeps its generic loops as the reference (the tests run them
/// in double). Allocates nothing after warm-up.
/// </summary>
public sealed unsafe class Gemm : IParallelJob, IDisposable
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
            s_shared?.Dispose();
            s_shared = new Gemm(threads);
        }
    }

    private readonly WorkerPool _pool;
    private float* _a, _b, _c;
    private int _m, _n, _k;
    private bool _accumulate;
    private Layout _layout;

    /// <summary>How A and B are stored: plain (A [m, k], B [k, n]), A transposed (A stored [k, m]) or B transposed (B
    /// stored [n, k], PyTorch's weight layout), so no caller has to transpose a matrix into scratch.</summary>
    private enum Layout { Plain, TransposedA, TransposedB }

    private readonly bool _wide;

    /// <summary>A pool of <paramref name="threads"/> (0: one per core). <paramref name="wide"/> runs the A·B tiles
    /// in 512-bit vectors (by default where the CPU has them); otherwise they use <see cref="Vector{T}"/>, 256 bits on
    /// AVX2.</summary>
    public Gemm(int threads, bool? wide = null)
    {
        _wide = wide ?? Vector512.IsHardwareAccelerated;
        if (_wide && !Vector512.IsHardwareAccelerated) throw new PlatformNotSupportedException("512-bit vectors");
        _pool = new WorkerPool(threads);
    }

    public int Threads => _pool.Threads;

    public void Dispose() => _pool.Dispose();

    /// <summary>The vector width of the A·B tiles, in floats.</summary>
    public int TileVectorWidth => _wide ? Vector512<float>.Count : Vector<float>.Count;

    /// <summary>C = A·B, or C += A·B when <paramref name="accumulate"/>; A [m, k], B [k, n], C [m, n].</summary>
    public void Multiply(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k,
        bool accumulate) => Run(a, b, c, m, n, k, accumulate, Layout.Plain);

    /// <summary>C (+)= Aᵀ·B with A stored [k, m]: a weight gradient dyᵀ·x straight from dy [tokens, out].</summary>
    public void MultiplyTransposedA(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k,
        bool accumulate) => Run(a, b, c, m, n, k, accumulate, Layout.TransposedA);

    /// <summary>C (+)= A·Bᵀ with B stored [n, k]: a linear layer x·wᵀ straight from w [out, in].</summary>
    public void MultiplyTransposedB(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k,
        bool accumulate) => Run(a, b, c, m, n, k, accumulate, Layout.TransposedB);

    /// <summary>Runs another job's items [0, count) on this pool (one job at a time, like a multiply).</summary>
    public void Run(IParallelJob job, int count)
    {
        lock (this) _pool.Run(job, count);
    }

    private void Run(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k,
        bool accumulate, Layout layout)
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
                (_m, _n, _k, _accumulate, _layout) = (m, n, k, accumulate, layout);
                _pool.Run(this, layout == Layout.TransposedB ? (n + 3) / 4 : (n + PanelWidth - 1) / PanelWidth);
                _a = _b = _c = null;
            }
        }
    }

    private int PanelWidth => 2 * TileVectorWidth;
    // rows of a B panel per pass: PanelWidth × 256 floats stay in L1 while every row block of A passes
    private const int KBlock = 256;

    /// <summary>
    /// Column panels [begin, end) of C. Each panel is done in k-blocks, and within a k-block every 4-row block of A
    /// runs against the same slice of B, which stays in L1; A's k-block (m × 256 floats) stays in L2.
    /// </summary>
    public void Execute(int begin, int end, int worker)
    {
        if (_layout == Layout.TransposedB)
        {
            ExecuteTransposedB(begin, end);
            return;
        }
        int width = PanelWidth;
        for (int panel = begin; panel < end; panel++)
        {
            int j = panel * width, columns = Math.Min(width, _n - j);
            for (int k0 = 0; k0 < _k; k0 += KBlock)
            {
                int k1 = Math.Min(_k, k0 + KBlock);
                bool add = _accumulate || k0 > 0;
                int r = 0;
                if (columns == width && _wide)
                    for (; r + 4 <= _m; r += 4) Tile4Wide(r, j, k0, k1, add);
                else if (columns == width)
                    for (; r + 4 <= _m; r += 4) Tile4(r, j, k0, k1, add);
                // tail rows, or every row of a partial last panel
                for (; r < _m; r++) Narrow(r, j, columns, k0, k1, add);
            }
        }
    }

    // 4 rows × 2 vectors of C, accumulated over k0..k1. A's element (r, kk) sits at r·k + kk, or at kk·m + r when A
    // is stored transposed: (rowStride, kStride) walks either.
    private void Tile4(int r0, int j, int k0, int k1, bool add)
    {
        int n = _n, width = Vector<float>.Count;
        var (rowStride, kStride) = AStrides;
        float* a0 = _a + (long)r0 * rowStride, a1 = a0 + rowStride, a2 = a1 + rowStride, a3 = a2 + rowStride;
        Vector<float> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default, s21 = default,
            s30 = default, s31 = default;
        float* bp = _b + (long)k0 * n + j;
        for (long kk = k0, ka = k0 * kStride; kk < k1; kk++, ka += kStride, bp += n)
        {
            var b0 = Unsafe.ReadUnaligned<Vector<float>>(bp);
            var b1 = Unsafe.ReadUnaligned<Vector<float>>(bp + width);
            var x = new Vector<float>(a0[ka]); s00 = Vector.FusedMultiplyAdd(x, b0,
                s00); s01 = Vector.FusedMultiplyAdd(x, b1, s01);
            x = new Vector<float>(a1[ka]); s10 = Vector.FusedMultiplyAdd(x, b0, s10); s11 = Vector.FusedMultiplyAdd(x,
                b1, s11);
            x = new Vector<float>(a2[ka]); s20 = Vector.FusedMultiplyAdd(x, b0, s20); s21 = Vector.FusedMultiplyAdd(x,
                b1, s21);
            x = new Vector<float>(a3[ka]); s30 = Vector.FusedMultiplyAdd(x, b0, s30); s31 = Vector.FusedMultiplyAdd(x,
                b1, s31);
        }
        float* c0 = _c + (long)r0 * n + j;
        Store(c0, s00, s01, width, add);
        Store(c0 + n, s10, s11, width, add);
        Store(c0 + 2 * n, s20, s21, width, add);
        Store(c0 + 3 * n, s30, s31, width, add);
    }

    // Tile4 in 512-bit vectors: 4 rows × 32 columns of C. Measured alone on Zen 5, 1.4–1.6× the 256-bit tile; the
    // dot-product tiles of A·Bᵀ stay at Vector<float>, where 512 bits made their horizontal sums cost more than they
    // saved (docs/BENCHMARKS.md, "The trainer's GEMM in 512-bit vectors").
    private void Tile4Wide(int r0, int j, int k0, int k1, bool add)
    {
        int n = _n, width = Vector512<float>.Count;
        var (rowStride, kStride) = AStrides;
        float* a0 = _a + (long)r0 * rowStride, a1 = a0 + rowStride, a2 = a1 + rowStride, a3 = a2 + rowStride;
        Vector512<float> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default, s21 = default,
            s30 = default, s31 = default;
        float* bp = _b + (long)k0 * n + j;
        for (long kk = k0, ka = k0 * kStride; kk < k1; kk++, ka += kStride, bp += n)
        {
            var b0 = Vector512.Load(bp);
            var b1 = Vector512.Load(bp + width);
            var x = Vector512.Create(a0[ka]);
            s00 = Vector512.FusedMultiplyAdd(x, b0, s00); s01 = Vector512.FusedMultiplyAdd(x, b1, s01);
            x = Vector512.Create(a1[ka]);
            s10 = Vector512.FusedMultiplyAdd(x, b0, s10); s11 = Vector512.FusedMultiplyAdd(x, b1, s11);
            x = Vector512.Create(a2[ka]);
            s20 = Vector512.FusedMultiplyAdd(x, b0, s20); s21 = Vector512.FusedMultiplyAdd(x, b1, s21);
            x = Vector512.Create(a3[ka]);
            s30 = Vector512.FusedMultiplyAdd(x, b0, s30); s31 = Vector512.FusedMultiplyAdd(x, b1, s31);
        }
        float* c0 = _c + (long)r0 * n + j;
        StoreWide(c0, s00, s01, add);
        StoreWide(c0 + n, s10, s11, add);
        StoreWide(c0 + 2 * n, s20, s21, add);
        StoreWide(c0 + 3 * n, s30, s31, add);
    }

    private static void StoreWide(float* c, Vector512<float> lo, Vector512<float> hi, bool add)
    {
        int width = Vector512<float>.Count;
        if (add)
        {
            lo += Vector512.Load(c);
            hi += Vector512.Load(c + width);
        }
        lo.Store(c);
        hi.Store(c + width);
    }

    // One row of C over `columns` (≤ one panel) columns: the tails of rows and of columns.
    private void Narrow(int r, int j, int columns, int k0, int k1, bool add)
    {
        int n = _n;
        var (rowStride, kStride) = AStrides;
        float* ar = _a + (long)r * rowStride, cr = _c + (long)r * n + j;
        for (int q = 0; q < columns; q++)
        {
            float s = 0;
            float* bp = _b + (long)k0 * n + j + q;
            for (long kk = k0; kk < k1; kk++, bp += n) s += ar[kk * kStride] * *bp;
            cr[q] = add ? cr[q] + s : s;
        }
    }

    private (long Row, long K) AStrides => _layout == Layout.TransposedA ? (1, _m) : (_k, 1);

    /// <summary>
    /// Blocks [begin, end) of 4 columns of C for A·Bᵀ: each element is a dot product of a row of A and a row of B,
    /// both contiguous in k, done 4 rows × 4 columns at a time with 16 vector accumulators. The 4 rows of B (4·k
    /// floats) stay in L1 while every row block of A passes.
    /// </summary>
    private void ExecuteTransposedB(int begin, int end)
    {
        int m = _m, n = _n, k = _k;
        for (int block = begin; block < end; block++)
        {
            int j = block * 4, columns = Math.Min(4, n - j);
            int r = 0;
            if (columns == 4)
                for (; r + 4 <= m; r += 4) DotTile4x4(r, j);
            // tail rows, or every row of a partial last block
            for (; r < m; r++)
                for (int q = 0; q < columns; q++) StoreOne(r, j + q, Dot(_a + (long)r * k, _b + (long)(j + q) * k, k));
        }
    }

    private void DotTile4x4(int r0, int j0)
    {
        int k = _k, width = Vector<float>.Count, vectorEnd = k - k % width;
        float* a0 = _a + (long)r0 * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
        float* b0 = _b + (long)j0 * k, b1 = b0 + k, b2 = b1 + k, b3 = b2 + k;
        Vector<float> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default,
            s12 = default, s13 = default, s20 = default, s21 = default, s22 = default, s23 = default, s30 = default,
            s31 = default, s32 = default, s33 = default;
        for (int kk = 0; kk < vectorEnd; kk += width)
        {
            var w0 = Unsafe.ReadUnaligned<Vector<float>>(b0 + kk);
            var w1 = Unsafe.ReadUnaligned<Vector<float>>(b1 + kk);
            var w2 = Unsafe.ReadUnaligned<Vector<float>>(b2 + kk);
            var w3 = Unsafe.ReadUnaligned<Vector<float>>(b3 + kk);
            var x = Unsafe.ReadUnaligned<Vector<float>>(a0 + kk);
            s00 = Vector.FusedMultiplyAdd(x, w0, s00); s01 = Vector.FusedMultiplyAdd(x, w1, s01);
            s02 = Vector.FusedMultiplyAdd(x, w2, s02); s03 = Vector.FusedMultiplyAdd(x, w3, s03);
            x = Unsafe.ReadUnaligned<Vector<float>>(a1 + kk);
            s10 = Vector.FusedMultiplyAdd(x, w0, s10); s11 = Vector.FusedMultiplyAdd(x, w1, s11);
            s12 = Vector.FusedMultiplyAdd(x, w2, s12); s13 = Vector.FusedMultiplyAdd(x, w3, s13);
            x = Unsafe.ReadUnaligned<Vector<float>>(a2 + kk);
            s20 = Vector.FusedMultiplyAdd(x, w0, s20); s21 = Vector.FusedMultiplyAdd(x, w1, s21);
            s22 = Vector.FusedMultiplyAdd(x, w2, s22); s23 = Vector.FusedMultiplyAdd(x, w3, s23);
            x = Unsafe.ReadUnaligned<Vector<float>>(a3 + kk);
            s30 = Vector.FusedMultiplyAdd(x, w0, s30); s31 = Vector.FusedMultiplyAdd(x, w1, s31);
            s32 = Vector.FusedMultiplyAdd(x, w2, s32); s33 = Vector.FusedMultiplyAdd(x, w3, s33);
        }
        // One call per accumulator: a span of all 16 makes them address-taken, and the JIT may then keep them in memory
        // through the loop (115 against 165 GFLOP/s alone, with the trainer's tiered JIT).
        FinishDot(r0, j0, vectorEnd, Vector.Sum(s00)); FinishDot(r0, j0 + 1, vectorEnd, Vector.Sum(s01));
        FinishDot(r0, j0 + 2, vectorEnd, Vector.Sum(s02)); FinishDot(r0, j0 + 3, vectorEnd, Vector.Sum(s03));
        FinishDot(r0 + 1, j0, vectorEnd, Vector.Sum(s10)); FinishDot(r0 + 1, j0 + 1, vectorEnd, Vector.Sum(s11));
        FinishDot(r0 + 1, j0 + 2, vectorEnd, Vector.Sum(s12)); FinishDot(r0 + 1, j0 + 3, vectorEnd, Vector.Sum(s13));
        FinishDot(r0 + 2, j0, vectorEnd, Vector.Sum(s20)); FinishDot(r0 + 2, j0 + 1, vectorEnd, Vector.Sum(s21));
        FinishDot(r0 + 2, j0 + 2, vectorEnd, Vector.Sum(s22)); FinishDot(r0 + 2, j0 + 3, vectorEnd, Vector.Sum(s23));
        FinishDot(r0 + 3, j0, vectorEnd, Vector.Sum(s30)); FinishDot(r0 + 3, j0 + 1, vectorEnd, Vector.Sum(s31));
        FinishDot(r0 + 3, j0 + 2, vectorEnd, Vector.Sum(s32)); FinishDot(r0 + 3, j0 + 3, vectorEnd, Vector.Sum(s33));
    }

    // C[r, q] = the vector part's sum plus the scalar tail of the dot product past vectorEnd.
    private void FinishDot(int r, int q, int vectorEnd, float sum)
    {
        int k = _k;
        for (int kk = vectorEnd; kk < k; kk++) sum += _a[(long)r * k + kk] * _b[(long)q * k + kk];
        StoreOne(r, q, sum);
    }

    private static float Dot(float* a, float* b, int k)
    {
        int width = Vector<float>.Count, vectorEnd = k - k % width;
        var acc = Vector<float>.Zero;
        for (int kk = 0; kk < vectorEnd; kk += width)
            acc = Vector.FusedMultiplyAdd(Unsafe.ReadUnaligned<Vector<float>>(a + kk),
                Unsafe.ReadUnaligned<Vector<float>>(b + kk), acc);
        float s = Vector.Sum(acc);
        for (int kk = vectorEnd; kk < k; kk++) s += a[kk] * b[kk];
        return s;
    }

    private void StoreOne(int r, int q, float value)
    {
        float* c = _c + (long)r * _n + q;
        *c = _accumulate ? *c + value : value;
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

    internal static ReadOnlySpan<float> AsFloats<T>(ReadOnlySpan<T> span) where T : struct => MemoryMarshal.Cast<T,
        float>(span);
    internal static Span<float> AsFloats<T>(Span<T> span) where T : struct => MemoryMarshal.Cast<T, float>(span);
}
