using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Kernels;

/// <summary>A packed weight matrix as the integer kernels read it: the layout plus raw pointers into the tensor (the
/// memory map).</summary>
public readonly unsafe struct PackedMatrix
{
    public readonly PackedLayout Layout;
    /// <summary>Codes: (tiles, chunks per row, 4 rows, 16 bytes).</summary>
    public readonly byte* Codes;
    /// <summary>Scales: (tiles, groups per row, 4 rows).</summary>
    public readonly float* Scales;

    /// <summary>The format's affine map (<see cref="WeightFormatInfo.Affine"/>) and α clamp, read once here for the
    /// epilogue.</summary>
    public readonly int A, B;
    public readonly float Multiplier;
    public readonly bool ClampsScale;

    public PackedMatrix(PackedLayout layout, byte* tensor)
    {
        Layout = layout;
        Codes = tensor;
        Scales = (float*)(tensor + layout.CodeBytes);
        var info = WeightFormats.Of(layout.Format);
        (A, B, Multiplier, ClampsScale) = (info.Affine.A, info.Affine.B, info.Affine.Multiplier, info.IsParetoQ);
    }

    public int Tiles => Layout.PaddedRows / PackedLayout.TileRows;
    /// <summary>Bytes of one tile's codes.</summary>
    public long TileBytes => (long)Layout.ChunksPerRow * PackedLayout.TileRows * PackedLayout.ChunkBytes;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* Tile(int tile) => Codes + tile * TileBytes;
}

/// <summary>Code widths as types, so each kernel path is compiled once per width with the width folded to a
/// constant.</summary>
internal interface ICodeWidth
{
    static abstract int Bits { get; }
}
internal struct Width1 : ICodeWidth { public static int Bits => 1; }
internal struct Width2 : ICodeWidth { public static int Bits => 2; }
internal struct Width3 : ICodeWidth { public static int Bits => 3; }
internal struct Width4 : ICodeWidth { public static int Bits => 4; }
internal struct Width8 : ICodeWidth { public static int Bits => 8; }

/// <summary>
/// One kernel path's inner loop: integer dot products of a 4-row tile's codes with int8 activations.
/// A unit is the smallest run of chunks that decodes on its own: 3 chunks (128 weights) for 3-bit, 1 chunk otherwise.
/// </summary>
internal unsafe interface ITileKernel
{
    /// <summary>
    /// sums[(g·count + t)·4 + r] = Σ code·x over units [unitBegin + g·unitsPerGroup, +unitsPerGroup) of row 4·tile + r,
    /// for token token0 + t, t &lt; count ≤ 4, g &lt; groups.
    /// </summary>
    static abstract void Sums(in PackedMatrix w, int tile, int unitBegin, int groups, int unitsPerGroup,
        QuantizedActivations x, int token0, int count, int* sums);

    /// <summary>
    /// For group-scaled formats: acc[t·4 + r] = Σ_g scale[g, r] · (S_g − B·X_g), with g in increasing order and each
    /// term rounded as <see cref="LowBitMatMul.GroupedDotFromSums{TKernel}"/> rounds it, so every path gives the same
    /// floats.
    /// </summary>
    static abstract void GroupedDot(in PackedMatrix w, int tile, QuantizedActivations x, int token0, int count,
        float* acc);

    /// <summary>
    /// A decode GEMV's sums over whole rows of <paramref name="tiles"/> tiles from <paramref name="tile0"/> (at
    /// most <see cref="LowBitMatMul.DecodeTiles"/>), one token: sums[t·4 + r] for row 4·(tile0 + t) + r. A path may
    /// take the tiles together to pay the per-tile reduction once per several tiles.
    /// </summary>
    static abstract void DecodeSums(in PackedMatrix w, int tile0, int tiles, QuantizedActivations x, int token,
        int* sums);
}

/// <summary>
/// The unit geometry of b-bit codes, as functions of the code width so each kernel path folds them to constants per
/// width type. <see cref="WeightFormatInfo.BlockCols"/> is one unit's columns (a test checks both agree).
/// </summary>
public static class CodeUnits
{
    /// <summary>Chunks in one decodable unit.</summary>
    public static int UnitChunks(int bits) => bits == 3 ? 3 : 1;
    /// <summary>Bit planes of 16 codes in one unit; each plane meets 16 consecutive activations.</summary>
    public static int Planes(int bits) => bits == 3 ? 8 : 8 / bits;
    /// <summary>Weights (columns) in one unit.</summary>
    public static int UnitCols(int bits) => 16 * Planes(bits);
}

/// <summary>
/// y = x · Wᵀ for packed low-bit W and int8 activations, on any <see cref="KernelPath"/>. The path computes the integer
/// sums; this driver owns the loop over tiles and tokens and the one float epilogue, so all paths agree bit for bit.
/// </summary>
public static unsafe class LowBitMatMul
{
    private const int TokenBlock = 4;
    /// <summary>
    /// How far ahead of its loads a decode GEMV prefetches the codes. One core's share of the bandwidth times the
    /// memory latency (about 33 GB/s × 180 ns): the prefetchers alone kept too few lines in flight, and the GEMV
    /// streamed 0.7 of one core's read bandwidth; 6 KB ahead took it to 0.82-0.92 (docs/BENCHMARKS.md). Prefetches
    /// past a matrix's end are harmless: they do not fault.
    /// </summary>
    internal const int DecodePrefetchBytes = 6 * 1024;
    /// <summary>Prefetches the code unit <see cref="DecodePrefetchBytes"/> ahead of p (x86 paths' decode loops), one
    /// prefetch per 64-byte line.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PrefetchUnit(byte* p, int bits)
    {
        Sse.Prefetch0(p + DecodePrefetchBytes);
        if (CodeUnits.UnitChunks(bits) == 1) return;
        Sse.Prefetch0(p + DecodePrefetchBytes + PackedLayout.ChunkBytes * PackedLayout.TileRows);
        Sse.Prefetch0(p + DecodePrefetchBytes + 2 * PackedLayout.ChunkBytes * PackedLayout.TileRows);
    }

    /// <summary>Tiles a decode GEMV hands a path at once (<see cref="ITileKernel.DecodeSums"/>).</summary>
    internal const int DecodeTiles = 4;
    private const int MaxGroupsPerCall = 16;
    // Weight bytes per cache block in prefill: held in L2 while every token block passes over it, the token block's
    // activations (a column chunk of them) in L1. The activations of all tokens are re-read once per block, so a block
    // of 24 KB (L1-sized) re-read them 50 times per 1 MB matrix: 256 KB made the 512-token GEMM 1.1-1.4x faster on 2
    // threads (docs/BENCHMARKS.md).
    private const long BlockBytes = 256 * 1024;

    /// <summary>
    /// Throws unless int32 cannot overflow for this shape, neither in the sums nor in A·S − B·X (every real model is
    /// far inside the bound: it allows 44k columns for int8 codes and over 700k for 4 bits and fewer).
    /// </summary>
    public static void CheckShape(in PackedLayout layout)
    {
        var affine = WeightFormats.Affine(layout.Format);
        int a = affine.A, b = affine.B;
        long worst = ((long)WeightFormats.MaxCode(layout.Format) * a + b) * 127 * Math.Min(layout.PaddedCols,
            layout.GroupSize);
        if (worst > int.MaxValue)
            throw new NotSupportedException($"{WeightFormats.Name(layout.Format)} rows of {layout.Cols} columns could overflow the int32 accumulators; use exact mode");
    }

    /// <summary>
    /// Rows of tiles [tileBegin, tileEnd) of y (x.Tokens, rows) = x · Wᵀ. Each tile is written by exactly one call, so
    /// threads may run disjoint tile ranges at once.
    /// </summary>
    public static void Run(KernelPath path, in PackedMatrix w, QuantizedActivations x, int tileBegin, int tileEnd,
        float* y)
    {
        if ((uint)path >= (uint)PathCount) throw new ArgumentOutOfRangeException(nameof(path), path,
            "unknown kernel path");
        s_drivers[(int)path * WidthSlots + w.Layout.CodeBits](w, x, tileBegin, tileEnd, y);
    }

    private static readonly int PathCount = Enum.GetValues<KernelPath>().Length;
    private const int WidthSlots = 9; // indexed by code width in bits: 1, 2, 3, 4, 8

    // The (path, code width) → kernel table, built once: each entry is the driver compiled for that pair.
    private static readonly delegate*<in PackedMatrix, QuantizedActivations, int, int, float*,
        void>[] s_drivers = Drivers();

    private static delegate*<in PackedMatrix, QuantizedActivations, int, int, float*, void>[] Drivers()
    {
        var table = new delegate*<in PackedMatrix, QuantizedActivations, int, int, float*,
            void>[PathCount * WidthSlots];
        void Set(KernelPath path, int bits, delegate*<in PackedMatrix, QuantizedActivations, int, int, float*,
            void> driver) =>
            table[(int)path * WidthSlots + bits] = driver;
        foreach (int bits in (int[])[1, 2, 3, 4, 8]) Set(KernelPath.Scalar, bits, &Drive<ScalarTileKernel>);
        Set(KernelPath.Avx2, 1, &Drive<Avx2TileKernel<Width1, UseMaddubs>>);
        Set(KernelPath.Avx2, 2, &Drive<Avx2TileKernel<Width2, UseMaddubs>>);
        Set(KernelPath.Avx2, 3, &Drive<Avx2TileKernel<Width3, UseMaddubs>>);
        Set(KernelPath.Avx2, 4, &Drive<Avx2TileKernel<Width4, UseMaddubs>>);
        Set(KernelPath.Avx2, 8, &Drive<Avx2TileKernel<Width8, UseMaddubs>>);
        Set(KernelPath.AvxVnni, 1, &Drive<Avx2TileKernel<Width1, UseVnni>>);
        Set(KernelPath.AvxVnni, 2, &Drive<Avx2TileKernel<Width2, UseVnni>>);
        Set(KernelPath.AvxVnni, 3, &Drive<Avx2TileKernel<Width3, UseVnni>>);
        Set(KernelPath.AvxVnni, 4, &Drive<Avx2TileKernel<Width4, UseVnni>>);
        Set(KernelPath.AvxVnni, 8, &Drive<Avx2TileKernel<Width8, UseVnni>>);
        Set(KernelPath.Avx512, 1, &Drive<Avx512TileKernel<Width1, UseShifts>>);
        Set(KernelPath.Avx512, 2, &Drive<Avx512TileKernel<Width2, UseShifts>>);
        Set(KernelPath.Avx512, 3, &Drive<Avx512TileKernel<Width3, UseShifts>>);
        Set(KernelPath.Avx512, 4, &Drive<Avx512TileKernel<Width4, UseShifts>>);
        Set(KernelPath.Avx512, 8, &Drive<Avx512TileKernel<Width8, UseShifts>>);
        Set(KernelPath.Avx512Gfni, 1, &Drive<Avx512TileKernel<Width1, UseGfni>>);
        Set(KernelPath.Avx512Gfni, 2, &Drive<Avx512TileKernel<Width2, UseGfni>>);
        Set(KernelPath.Avx512Gfni, 3, &Drive<Avx512TileKernel<Width3, UseGfni>>);
        Set(KernelPath.Avx512Gfni, 4, &Drive<Avx512TileKernel<Width4, UseGfni>>);
        Set(KernelPath.Avx512Gfni, 8, &Drive<Avx512TileKernel<Width8, UseGfni>>);
        Set(KernelPath.Neon, 1, &Drive<NeonTileKernel<Width1>>);
        Set(KernelPath.Neon, 2, &Drive<NeonTileKernel<Width2>>);
        Set(KernelPath.Neon, 3, &Drive<NeonTileKernel<Width3>>);
        Set(KernelPath.Neon, 4, &Drive<NeonTileKernel<Width4>>);
        Set(KernelPath.Neon, 8, &Drive<NeonTileKernel<Width8>>);
        return table;
    }

    private static void Drive<TKernel>(in PackedMatrix w, QuantizedActivations x, int tileBegin, int tileEnd, float* y)
        where TKernel : ITileKernel
    {
        var layout = w.Layout;
        int units = layout.PaddedCols / CodeUnits.UnitCols(layout.CodeBits);
        bool grouped = layout.GroupsPerRow > 1;
        int tilesPerBlock = x.Tokens <= TokenBlock ? tileEnd - tileBegin : (int)Math.Max(1, BlockBytes / w.TileBytes);
        // Prefill of long rows: the columns are taken in chunks whose activations for a token block stay in L1 while
        // every tile of the cache block passes over them, each tile's integer sums added up over the chunks (exact).
        // Whole rows of 3584 columns were 57 KB of activations per token block (4 copies each on x86), more than L1,
        // re-read for every tile: down ran at 0.6 of up's rate, the same work transposed.
        int unitsPerChunk = x.Tokens <= TokenBlock || grouped ? units
            : Math.Max(1, ActivationChunkBytes / (TokenBlock * CodeUnits.UnitCols(layout.CodeBits)
                * (QuantizedActivations.HasWide ? QuantizedActivations.WideCopies : 1)));
        bool chunked = unitsPerChunk < units;
        if (chunked)
        {
            int chunks = (units + unitsPerChunk - 1) / unitsPerChunk;
            unitsPerChunk = (units + chunks - 1) / chunks; // equal chunks, none short
            tilesPerBlock = Math.Min(tilesPerBlock, MaxChunkedTiles);
        }
        int* sums = stackalloc int[TokenBlock * PackedLayout.TileRows];
        int* decodeSums = stackalloc int[DecodeTiles * PackedLayout.TileRows];
        // Only chunked calls take (and zero) the per-tile sums: decode calls this once per GEMV share.
        int* blockSums = null;
        if (chunked)
        {
            int* kept = stackalloc int[MaxChunkedTiles * TokenBlock * PackedLayout.TileRows]; // lives until return
            blockSums = kept;
        }
        float* acc = stackalloc float[TokenBlock * PackedLayout.TileRows];
        for (int block = tileBegin; block < tileEnd; block += tilesPerBlock)
        {
            int blockEnd = Math.Min(tileEnd, block + tilesPerBlock);
            for (int t0 = 0; t0 < x.Tokens; t0 += TokenBlock)
            {
                int count = Math.Min(TokenBlock, x.Tokens - t0);
                if (chunked)
                {
                    const int perTile = TokenBlock * PackedLayout.TileRows;
                    new Span<int>(blockSums, (blockEnd - block) * perTile).Clear();
                    for (int u0 = 0; u0 < units; u0 += unitsPerChunk)
                    {
                        int n = Math.Min(unitsPerChunk, units - u0);
                        for (int tile = block; tile < blockEnd; tile++)
                        {
                            TKernel.Sums(w, tile, u0, 1, n, x, t0, count, sums);
                            int* into = blockSums + (tile - block) * perTile;
                            for (int i = 0; i < count * PackedLayout.TileRows; i++) into[i] += sums[i];
                        }
                    }
                    for (int tile = block; tile < blockEnd; tile++)
                        StorePerRow(w, x, y, tile, t0, count, blockSums + (tile - block) * perTile);
                    continue;
                }
                if (count == 1 && !grouped)
                {
                    for (int tile = block; tile < blockEnd; tile += DecodeTiles)
                    {
                        int tiles = Math.Min(DecodeTiles, blockEnd - tile);
                        TKernel.DecodeSums(w, tile, tiles, x, t0, decodeSums);
                        for (int t = 0; t < tiles; t++)
                            StorePerRow(w, x, y, tile + t, t0, 1, decodeSums + t * PackedLayout.TileRows);
                    }
                    continue;
                }
                for (int tile = block; tile < blockEnd; tile++)
                {
                    if (!grouped)
                    {
                        TKernel.Sums(w, tile, 0, 1, units, x, t0, count, sums);
                        StorePerRow(w, x, y, tile, t0, count, sums);
                        continue;
                    }
                    TKernel.GroupedDot(w, tile, x, t0, count, acc);
                    StoreGrouped(w, x, y, tile, t0, count, acc);
                }
            }
        }
    }

    // A token block's activations per column chunk in prefill: half of a 48 KB L1, beside the codes being read (rows
    // of 1280 columns, 20 KB on x86, stay whole).
    private const int ActivationChunkBytes = 24 * 1024;
    // Tiles whose sums are kept while the chunks pass: caps a cache block of chunked rows (at 2 bits over 1536 columns
    // a tile is over 1.5 KB, so 256 KB holds fewer than 171 of them).
    private const int MaxChunkedTiles = 128;

    // y = (A·S − B·X) · (α·multiplier) · xScale, per row; the one place per-row results are formed. A·S − B·X is exact
    // in int32 (CheckShape), so the float result has one rounding there, then two multiplies, on every path. Σ value·x
    // = scale · multiplier · (A · Σ code·x − B · Σ x) is the format's affine map (WeightFormatInfo.Affine).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePerRow(in PackedMatrix w, QuantizedActivations x, float* y, int tile, int t0, int count,
        int* sums)
    {
        var layout = w.Layout;
        int a = w.A, b = w.B;
        var rowScale = Quantizer.EffectiveScale(w.ClampsScale,
            Vector128.Load(w.Scales + (long)tile * PackedLayout.TileRows)) * w.Multiplier;
        int row0 = tile * PackedLayout.TileRows;
        bool full = row0 + PackedLayout.TileRows <= layout.Rows;
        for (int t = 0; t < count; t++)
        {
            var diff = Vector128.Load(sums + t * PackedLayout.TileRows) * a - Vector128.Create(b * x.Sum(t0 + t));
            var result = Vector128.ConvertToSingle(diff) * rowScale * x.Scales[t0 + t];
            float* yt = y + (long)(t0 + t) * layout.Rows + row0;
            if (full) result.Store(yt);
            else for (int r = 0; r < layout.Rows - row0; r++) yt[r] = result[r];
        }
    }

    /// <summary>Whether a tile's groups are what the vector <see cref="ITileKernel.GroupedDot"/> loops take: 4-bit codes
    /// with zero point 8, one group per 32-weight unit (the activations' group sums). Other layouts go through
    /// <see cref="GroupedDotFromSums{TKernel}"/>.</summary>
    internal static bool IsNibbleGroup32(in PackedMatrix w) =>
        w.Layout.CodeBits == 4 && w.Layout.GroupSize == QuantizedActivations.SumGroup && w.B == 8;

    /// <summary><see cref="ITileKernel.DecodeSums"/> one tile at a time, for paths without a joined
    /// reduction.</summary>
    internal static void DecodeSumsPerTile<TKernel>(in PackedMatrix w, int tile0, int tiles, QuantizedActivations x,
        int token, int* sums)
        where TKernel : ITileKernel
    {
        int units = w.Layout.PaddedCols / CodeUnits.UnitCols(w.Layout.CodeBits);
        for (int t = 0; t < tiles; t++)
            TKernel.Sums(w, tile0 + t, 0, 1, units, x, token, 1, sums + t * PackedLayout.TileRows);
    }

    /// <summary>
    /// The reference <see cref="ITileKernel.GroupedDot"/>: integer sums per group from the path's <c>Sums</c>, then
    /// acc[t, r] += scale · (float)(S_g − B·X_g) in group order (one multiply, one add: no fused multiply-add).
    /// </summary>
    internal static void GroupedDotFromSums<TKernel>(in PackedMatrix w, int tile, QuantizedActivations x, int token0,
        int count, float* acc)
        where TKernel : ITileKernel
    {
        var layout = w.Layout;
        int b = w.B;
        int unitsPerGroup = layout.GroupSize / CodeUnits.UnitCols(layout.CodeBits);
        int groupsPerSum = layout.GroupSize / QuantizedActivations.SumGroup;
        int* sums = stackalloc int[MaxGroupsPerCall * TokenBlock * PackedLayout.TileRows];
        new Span<float>(acc, count * PackedLayout.TileRows).Clear();
        for (int g0 = 0; g0 < layout.GroupsPerRow; g0 += MaxGroupsPerCall)
        {
            int groups = Math.Min(MaxGroupsPerCall, layout.GroupsPerRow - g0);
            TKernel.Sums(w, tile, g0 * unitsPerGroup, groups, unitsPerGroup, x, token0, count, sums);
            for (int g = 0; g < groups; g++)
            {
                float* scales = w.Scales + ((long)tile * layout.GroupsPerRow + g0 + g) * PackedLayout.TileRows;
                for (int t = 0; t < count; t++)
                {
                    int* xg = x.GroupSums + (long)(token0 + t) * x.GroupsPerToken + (g0 + g) * groupsPerSum;
                    int xSum = 0;
                    for (int i = 0; i < groupsPerSum; i++) xSum += xg[i];
                    int* s = sums + (g * count + t) * PackedLayout.TileRows;
                    for (int r = 0; r < PackedLayout.TileRows; r++)
                        acc[t * PackedLayout.TileRows + r] += scales[r] * (float)(s[r] - b * xSum);
                }
            }
        }
    }

    private static void StoreGrouped(in PackedMatrix w, QuantizedActivations x, float* y, int tile, int t0, int count,
        float* acc)
    {
        var layout = w.Layout;
        for (int t = 0; t < count; t++)
        {
            float* yt = y + (long)(t0 + t) * layout.Rows;
            for (int r = 0; r < PackedLayout.TileRows; r++)
            {
                int row = tile * PackedLayout.TileRows + r;
                if (row >= layout.Rows) break;
                yt[row] = acc[t * PackedLayout.TileRows + r] * x.Scales[t0 + t];
            }
        }
    }
}
