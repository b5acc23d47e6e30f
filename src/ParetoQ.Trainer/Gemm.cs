using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Trainer;

/// <summary>
/// The trainer's float matrix multiply, C[m, n] (+)= A[m, k]·B[k, n] over row-major arrays: column panels of C split
/// over a persistent <see cref="WorkerPool"/>; per panel and k-block, B is packed into a contiguous L1-sized buffer,
/// and register tiles of 8 rows × 2 vectors of C (4 rows with <see cref="Vector{T}"/>) run against it with one
/// broadcast of A per two multiply-adds. A may be stored transposed (a weight gradient from dy as it lies), and B may
/// be stored transposed (a weight [out, in] as it lies): only the packing differs, so no matmul copies a whole matrix.
/// <see cref="Ops{T}"/> routes its float matmuls here and keeps its generic loops as the reference (the tests run them
/// in double). Allocates nothing after construction.
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
    private readonly float*[] _panels, _tiles;
    private readonly List<float[]> _scratch = [];

    /// <summary>A pool of <paramref name="threads"/> (0: one per core). <paramref name="wide"/> runs the A·B tiles
    /// in 512-bit vectors (by default where the CPU has them); otherwise they use <see cref="Vector{T}"/>, 256 bits on
    /// AVX2.</summary>
    public Gemm(int threads, bool? wide = null)
    {
        _wide = wide ?? Vector512.IsHardwareAccelerated;
        if (_wide && !Vector512.IsHardwareAccelerated) throw new PlatformNotSupportedException("512-bit vectors");
        _pool = new WorkerPool(threads);
        _panels = new float*[_pool.Threads];
        _tiles = new float*[_pool.Threads];
        for (int worker = 0; worker < _pool.Threads; worker++)
        {
            _panels[worker] = PinnedAligned(KBlock * PanelWidth);
            _tiles[worker] = PinnedAligned(RowsPerTile * PanelWidth);
        }
    }

    // Per-worker scratch for the life of the pool: on the pinned heap, so the pointers stay valid without a Dispose
    // while _scratch holds the arrays (an unreferenced pinned array is collected like any other); aligned to 64
    // bytes so no vector load of a panel splits a cache line.
    private float* PinnedAligned(int floats)
    {
        var array = GC.AllocateUninitializedArray<float>(floats + 16, pinned: true);
        _scratch.Add(array);
        nint start = (nint)Unsafe.AsPointer(ref array[0]);
        return (float*)((start + 63) & ~(nint)63);
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
                _pool.Run(this, (n + PanelWidth - 1) / PanelWidth);
                _a = _b = _c = null;
            }
        }
    }

    private int PanelWidth => 2 * TileVectorWidth;
    // rows of a packed B panel per pass: PanelWidth × 256 floats stay in L1 while every row block of A passes
    private const int KBlock = 256;
    private int RowsPerTile => _wide ? 8 : 4;

    /// <summary>
    /// Column panels [begin, end) of C. Each panel is done in k-blocks: the block of B is packed once into this
    /// worker's contiguous [k, PanelWidth] buffer (from either layout of B, the last panel padded with zeros), then
    /// every row block of A runs against it from L1; A's k-block (m × 256 floats) stays in L2.
    /// </summary>
    public void Execute(int begin, int end, int worker)
    {
        int width = PanelWidth, rows = RowsPerTile;
        float* panel = _panels[worker], tile = _tiles[worker];
        for (int p = begin; p < end; p++)
        {
            int j = p * width, columns = Math.Min(width, _n - j);
            for (int k0 = 0; k0 < _k; k0 += KBlock)
            {
                int k1 = Math.Min(_k, k0 + KBlock);
                bool add = _accumulate || k0 > 0;
                PackPanel(panel, j, columns, k0, k1);
                int r = 0;
                for (; r + rows <= _m; r += rows)
                {
                    if (columns == width) Tile(panel, r, _c + (long)r * _n + j, _n, k0, k1, add);
                    else
                    {
                        // the last, partial panel: the full tile into scratch, then only its real columns into C
                        Tile(panel, r, tile, width, k0, k1, false);
                        for (int i = 0; i < rows; i++)
                            Merge(tile + i * width, _c + (long)(r + i) * _n + j, columns, add);
                    }
                }
                for (; r < _m; r++) Narrow(panel, r, j, columns, k0, k1, add);
            }
        }
    }

    // B's rows k0..k1 and columns j..j+columns as a contiguous [k1 − k0, PanelWidth] block, zero past the columns.
    private void PackPanel(float* panel, int j, int columns, int k0, int k1)
    {
        int width = PanelWidth;
        if (columns < width) new Span<float>(panel, (k1 - k0) * width).Clear();
        if (_layout == Layout.TransposedB) // B stored [n, k]: a column of the panel is a contiguous run of a row
            for (int q = 0; q < columns; q++)
            {
                float* source = _b + (long)(j + q) * _k;
                for (int kk = k0; kk < k1; kk++) panel[(kk - k0) * width + q] = source[kk];
            }
        else if (columns == width) // a whole row of the panel: a span copy's call would cost as much as the copy
            for (int kk = k0; kk < k1; kk++)
            {
                float* source = _b + (long)kk * _n + j, target = panel + (kk - k0) * width;
                for (int q = 0; q < width; q += Vector<float>.Count)
                    Unsafe.WriteUnaligned(target + q, Unsafe.ReadUnaligned<Vector<float>>(source + q));
            }
        else
            for (int kk = k0; kk < k1; kk++)
                new ReadOnlySpan<float>(_b + (long)kk * _n + j, columns)
                    .CopyTo(new Span<float>(panel + (kk - k0) * width, columns));
    }

    private void Tile(float* panel, int r0, float* c, long ldc, int k0, int k1, bool add)
    {
        if (_wide) Tile8Wide(panel, r0, c, ldc, k0, k1, add);
        else Tile4(panel, r0, c, ldc, k0, k1, add);
    }

    // 4 rows × 2 vectors of C, accumulated over k0..k1 (one broadcast of A and two loads of B per 2 × 4
    // multiply-adds). A's element (r, kk) sits at r·k + kk, or at kk·m + r when A is stored transposed: (rowStride,
    // kStride) walks either.
    private void Tile4(float* panel, int r0, float* c, long ldc, int k0, int k1, bool add)
    {
        int width = Vector<float>.Count;
        var (rowStride, kStride) = AStrides;
        float* a0 = _a + r0 * rowStride, a1 = a0 + rowStride, a2 = a1 + rowStride, a3 = a2 + rowStride;
        Vector<float> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default, s21 = default,
            s30 = default, s31 = default;
        float* bp = panel;
        for (long ka = k0 * kStride, kEnd = k1 * kStride; ka < kEnd; ka += kStride, bp += 2 * width)
        {
            var b0 = Unsafe.ReadUnaligned<Vector<float>>(bp);
            var b1 = Unsafe.ReadUnaligned<Vector<float>>(bp + width);
            var x = new Vector<float>(a0[ka]);
            s00 = Vector.FusedMultiplyAdd(x, b0, s00); s01 = Vector.FusedMultiplyAdd(x, b1, s01);
            x = new Vector<float>(a1[ka]);
            s10 = Vector.FusedMultiplyAdd(x, b0, s10); s11 = Vector.FusedMultiplyAdd(x, b1, s11);
            x = new Vector<float>(a2[ka]);
            s20 = Vector.FusedMultiplyAdd(x, b0, s20); s21 = Vector.FusedMultiplyAdd(x, b1, s21);
            x = new Vector<float>(a3[ka]);
            s30 = Vector.FusedMultiplyAdd(x, b0, s30); s31 = Vector.FusedMultiplyAdd(x, b1, s31);
        }
        Store(c, s00, s01, add);
        Store(c + ldc, s10, s11, add);
        Store(c + 2 * ldc, s20, s21, add);
        Store(c + 3 * ldc, s30, s31, add);
    }

    // The 512-bit tile: 8 rows × 32 columns of C in 16 accumulators, enough independent multiply-adds to cover the
    // FMA latency of two pipes, with 10 loads per 16 multiply-adds. On Zen 5, alone: ≈1.2–1.6× the 4-row tile
    // (docs/BENCHMARKS.md, "Packed panels and an 8-row tile").
    private void Tile8Wide(float* panel, int r0, float* c, long ldc, int k0, int k1, bool add)
    {
        int width = Vector512<float>.Count;
        var (rowStride, kStride) = AStrides;
        float* a0 = _a + r0 * rowStride, a1 = a0 + rowStride, a2 = a1 + rowStride, a3 = a2 + rowStride,
            a4 = a3 + rowStride, a5 = a4 + rowStride, a6 = a5 + rowStride, a7 = a6 + rowStride;
        Vector512<float> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default, s21 = default,
            s30 = default, s31 = default, s40 = default, s41 = default, s50 = default, s51 = default, s60 = default,
            s61 = default, s70 = default, s71 = default;
        float* bp = panel;
        for (long ka = k0 * kStride, kEnd = k1 * kStride; ka < kEnd; ka += kStride, bp += 2 * width)
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
            x = Vector512.Create(a4[ka]);
            s40 = Vector512.FusedMultiplyAdd(x, b0, s40); s41 = Vector512.FusedMultiplyAdd(x, b1, s41);
            x = Vector512.Create(a5[ka]);
            s50 = Vector512.FusedMultiplyAdd(x, b0, s50); s51 = Vector512.FusedMultiplyAdd(x, b1, s51);
            x = Vector512.Create(a6[ka]);
            s60 = Vector512.FusedMultiplyAdd(x, b0, s60); s61 = Vector512.FusedMultiplyAdd(x, b1, s61);
            x = Vector512.Create(a7[ka]);
            s70 = Vector512.FusedMultiplyAdd(x, b0, s70); s71 = Vector512.FusedMultiplyAdd(x, b1, s71);
        }
        StoreWide(c, s00, s01, add);
        StoreWide(c + ldc, s10, s11, add);
        StoreWide(c + 2 * ldc, s20, s21, add);
        StoreWide(c + 3 * ldc, s30, s31, add);
        StoreWide(c + 4 * ldc, s40, s41, add);
        StoreWide(c + 5 * ldc, s50, s51, add);
        StoreWide(c + 6 * ldc, s60, s61, add);
        StoreWide(c + 7 * ldc, s70, s71, add);
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

    private static void Store(float* c, Vector<float> lo, Vector<float> hi, bool add)
    {
        int width = Vector<float>.Count;
        if (add)
        {
            lo += Unsafe.ReadUnaligned<Vector<float>>(c);
            hi += Unsafe.ReadUnaligned<Vector<float>>(c + width);
        }
        Unsafe.WriteUnaligned(c, lo);
        Unsafe.WriteUnaligned(c + width, hi);
    }

    private static void Merge(float* tile, float* c, int columns, bool add)
    {
        for (int q = 0; q < columns; q++) c[q] = add ? c[q] + tile[q] : tile[q];
    }

    // One row of C over `columns` (≤ one panel) columns: the rows past the last whole tile.
    private void Narrow(float* panel, int r, int j, int columns, int k0, int k1, bool add)
    {
        int width = PanelWidth;
        var (rowStride, kStride) = AStrides;
        float* ar = _a + r * rowStride, cr = _c + (long)r * _n + j;
        for (int q = 0; q < columns; q++)
        {
            float s = 0;
            for (int kk = k0; kk < k1; kk++) s += ar[kk * kStride] * panel[(kk - k0) * width + q];
            cr[q] = add ? cr[q] + s : s;
        }
    }

    private (long Row, long K) AStrides => _layout == Layout.TransposedA ? (1, _m) : (_k, 1);

    internal static ReadOnlySpan<float> AsFloats<T>(ReadOnlySpan<T> span) where T : struct => MemoryMarshal.Cast<T,
        float>(span);
    internal static Span<float> AsFloats<T>(Span<T> span) where T : struct => MemoryMarshal.Cast<T, float>(span);
}
