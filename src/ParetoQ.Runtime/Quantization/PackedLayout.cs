namespace ParetoQ.Runtime.Quantization;

/// <summary>
/// Geometry of a packed [rows, cols] weight matrix: one layout that AVX2, AVX-512 and NEON kernels all read in place.
/// <para>
/// Rows are grouped in tiles of <see cref="TileRows"/>. Each row's codes are a sequence of 16-byte chunks, and a tile
/// stores chunk c of its 4 rows next to each other: a 64-byte load (AVX-512) holds the same 16-byte chunk of 4 rows, a
/// 32-byte load (AVX2) 2 rows, a 16-byte load (NEON) 1 row, so one broadcast 128-bit activation block serves every
/// lane.
/// </para>
/// <para>
/// Inside a chunk of b-bit codes (b = 1, 2, 4, 8) byte i, bits [j·b, j·b + b) hold in-chunk weight j·16 + i: shifting
/// the whole 16-byte vector right by j·b and masking yields 16 consecutive codes. 3-bit codes use 128-weight blocks of
/// three chunks: the low 2 bits of weights 0..63 and 64..127 as two 2-bit chunks, then their high bits as one 1-bit
/// chunk.
/// </para>
/// <para>
/// Rows are zero-padded to a multiple of 4 and columns to <see cref="BlockCols"/> (activations are zero-padded to
/// match). After all codes (a multiple of 64 bytes) come the fp32 scales, ordered [tile][group][row in tile].
/// </para>
/// </summary>
public readonly struct PackedLayout
{
    public const int TileRows = 4;
    public const int ChunkBytes = 16;
    /// <summary>Largest rows or cols of a packed matrix; keeps every size and offset computation far from
    /// overflow.</summary>
    public const int MaxDim = 1 << 28;

    public WeightFormat Format { get; }
    public int Rows { get; }
    public int Cols { get; }
    public int PaddedRows { get; }
    public int PaddedCols { get; }
    public int CodeBits { get; }
    /// <summary>16-byte chunks per row.</summary>
    public int ChunksPerRow { get; }
    /// <summary>Scales per row: 1 for per-row formats, PaddedCols / 32 for group-32.</summary>
    public int GroupsPerRow { get; }
    public int GroupSize { get; }
    public long CodeBytes { get; }
    public long TotalBytes { get; }

    public PackedLayout(WeightFormat format, int rows, int cols)
    {
        if (!WeightFormats.IsPacked(format)) throw new ArgumentException($"{format} is not a packed integer format",
            nameof(format));
        if (rows <= 0 || cols <= 0 || rows > MaxDim || cols > MaxDim)
            throw new ArgumentOutOfRangeException(nameof(rows),
                $"matrix shape [{rows}, {cols}] must be within 1..{MaxDim}");
        Format = format;
        Rows = rows;
        Cols = cols;
        CodeBits = WeightFormats.CodeBits(format);
        int block = BlockCols(format);
        PaddedRows = (rows + TileRows - 1) / TileRows * TileRows;
        PaddedCols = (cols + block - 1) / block * block;
        ChunksPerRow = (int)((long)PaddedCols * CodeBits / 8 / ChunkBytes);
        GroupSize = WeightFormats.GroupSize(format) == 0 ? PaddedCols : WeightFormats.GroupSize(format);
        GroupsPerRow = PaddedCols / GroupSize;
        CodeBytes = (long)PaddedRows * ChunksPerRow * ChunkBytes;
        TotalBytes = CodeBytes + (long)PaddedRows * GroupsPerRow * sizeof(float);
    }

    /// <summary>
    /// The most codes a row of <paramref name="cols"/> columns unpacks to in any packed format (its PaddedCols at the
    /// widest block): the size of a row-code scratch buffer that serves every format.
    /// </summary>
    public static int MaxPaddedCols(int cols)
    {
        int widest = WeightFormats.All.Where(f => f.IsPacked).Max(f => f.BlockCols);
        return checked((cols + widest - 1) / widest * widest);
    }

    public static int BlockCols(WeightFormat format) =>
        WeightFormats.IsPacked(format) ? WeightFormats.Of(format).BlockCols
            : throw new ArgumentException($"{format} is not a packed integer format", nameof(format));

    /// <summary>Byte offset of chunk <paramref name="chunk"/> of <paramref name="row"/> from the start of the
    /// tensor.</summary>
    public long ChunkOffset(int row, int chunk) =>
        (((long)(row / TileRows) * ChunksPerRow + chunk) * TileRows + row % TileRows) * ChunkBytes;

    /// <summary>Index of the scale of (row, group) among the floats that follow the codes.</summary>
    public long ScaleIndex(int row, int group) =>
        ((long)(row / TileRows) * GroupsPerRow + group) * TileRows + row % TileRows;
}
