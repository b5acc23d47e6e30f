using ParetoQ.Runtime.Interchange;

namespace ParetoQ.Runtime.Quantization;

/// <summary>Storage format of one tensor in a .pq file. The numeric values are part of the file format: never
/// renumber.</summary>
public enum WeightFormat : byte
{
    F32 = 0,
    F16 = 1,
    BF16 = 2,
    /// <summary>int8, one symmetric scale per row (embeddings, head). code = q + 128.</summary>
    I8Row = 3,
    /// <summary>ParetoQ 4-bit LSQ, one α per row. code = q + 8, q ∈ [−8, 7].</summary>
    Q4Row = 4,
    /// <summary>ParetoQ 3-bit LSQ, one α per row. code = q + 4, q ∈ [−4, 3].</summary>
    Q3Row = 5,
    /// <summary>ParetoQ 2-bit SEQ, one α per row. code ∈ 0..3, value α(2·code − 3)/4.</summary>
    Q2Seq = 6,
    /// <summary>ParetoQ 1.58-bit SEQ, one α per row. code = q + 1 ∈ 0..2 stored in 2 bits, value (2α/3)·q.</summary>
    Ternary = 7,
    /// <summary>ParetoQ 1-bit LSQ, one α per row. code 1 = +α, code 0 = −α.</summary>
    Binary = 8,
    /// <summary>int4 symmetric, one scale per 32 inputs (MobileLLM-Pro CPU). code = q + 8.</summary>
    Q4G32 = 9,
}

/// <summary>
/// A packed format's grid as integer levels: value = scale · (A · code − B) / Divisor (REFERENCE.md §1). The levels
/// A · code − B are small integers, so the integer kernels multiply unsigned codes only and fix up B with the
/// activation sum, and every GGUF block type whose integer range covers the levels holds the grid exactly.
/// </summary>
public readonly record struct AffineCodes(int A, int B, float Divisor)
{
    /// <summary>The step between levels as the kernels multiply it: 1 / Divisor, rounded once.</summary>
    public float Multiplier => 1f / Divisor;

    /// <summary>value = scale · (A·code − B) / Divisor, with the arithmetic (and rounding) of
    /// <see cref="Quantizer.FakeQuantize"/>.</summary>
    public float Value(int code, float scale) => scale * ((A * code - B) / Divisor);

    /// <summary>The same value as one line in the code, value = scale · (Slope · code + Intercept): the GPU kernels'
    /// form.</summary>
    public (float Slope, float Intercept) Line => (Multiplier * A, -Multiplier * B);
}

/// <summary>
/// The trainer's fake-quant grid (REFERENCE.md §1). LSQ rounds t = W/α and clamps it to [Qn, Qp]; SEQ clips t to
/// ±<see cref="Quantizer.SeqClip"/> (Qn = −Qp = the clip) before rounding, and beyond the clip α's gradient takes
/// ∓<see cref="ClippedGradient"/>.
/// </summary>
public sealed record TrainingGrid(bool Seq, float Qn, float Qp, float ClippedGradient);

/// <summary>
/// Everything about one <see cref="WeightFormat"/> in one place, as ggml's type traits: its bits and levels, the affine
/// code → value map, the packed geometry and scale layout, the GGUF type it exports to and the trainer's grid. The
/// kernels, packer, GGUF exporter, ILGPU upload and trainer read it; a test checks each of them against it.
/// </summary>
/// <param name="Name">The name used in .pq metadata and on the command line.</param>
/// <param name="NominalBits">Bits per weight as users name them (1.58 for ternary).</param>
/// <param name="CodeBits">Bits per stored code (ternary is held in 2); 16 or 32 for dense floats.</param>
/// <param name="ElementBytes">Bytes per element of a dense float format; 0 for packed formats.</param>
/// <param name="Levels">Distinct values of a packed grid (per scale).</param>
/// <param name="MaxCode">Largest code of a packed format (codes are unsigned, 0..MaxCode).</param>
/// <param name="Affine">The code → value map of a packed format.</param>
/// <param name="BlockCols">Columns of one unit of the chunk arrangement; packed rows are padded to a multiple of
/// it.</param>
/// <param name="GroupSize">Inputs that share one scale: 32 for q4_g32, 0 for one scale per row.</param>
/// <param name="Gguf">The ggml type that holds the format's levels (the float formats keep their own type).</param>
/// <param name="Grid">The ParetoQ QAT grid the trainer fake-quantizes with; null for the PTQ and float formats.</param>
public sealed record WeightFormatInfo(
    WeightFormat Format, string Name, double NominalBits, int CodeBits, int ElementBytes, int Levels, int MaxCode,
    AffineCodes Affine, int BlockCols, int GroupSize, GgmlType Gguf, TrainingGrid? Grid)
{
    public bool IsFloat => ElementBytes > 0;
    public bool IsPacked => !IsFloat;
    /// <summary>The ParetoQ QAT grids; their α is used as max(α, 1e-5).</summary>
    public bool IsParetoQ => Grid is not null;
    /// <summary>Where the scales sit: after all codes, fp32, ordered [tile][group][row in tile]
    /// (<see cref="PackedLayout"/>).</summary>
    public string ScaleLayout => IsFloat ? "none" : GroupSize == 0 ? "fp32 per row" : $"fp32 per {GroupSize} inputs";
}

/// <summary>The descriptor table: one <see cref="WeightFormatInfo"/> per <see cref="WeightFormat"/>, and lookups over
/// it.</summary>
public static class WeightFormats
{
    private static readonly WeightFormatInfo[] s_table =
    [
        new(WeightFormat.F32, "f32", 32, 32, 4, 0, 0, default, 0, 0, GgmlType.F32, null),
        new(WeightFormat.F16, "f16", 16, 16, 2, 0, 0, default, 0, 0, GgmlType.F16, null),
        new(WeightFormat.BF16, "bf16", 16, 16, 2, 0, 0, default, 0, 0, GgmlType.BF16, null),
        // −127 … 127 (code 0 unused)
        new(WeightFormat.I8Row, "i8_row", 8, 8, 0, 255, 255, new(1, 128, 1), 16, 0, GgmlType.Q8_0, null),
        // −8 … 7
        new(WeightFormat.Q4Row, "q4_row", 4, 4, 0, 16, 15, new(1, 8, 1), 32, 0, GgmlType.Q4_0, new(false, -8, 7, 0)),
        // −4 … 3
        new(WeightFormat.Q3Row, "q3_row", 3, 3, 0, 8, 7, new(1, 4, 1), 128, 0, GgmlType.Q4_0, new(false, -4, 3, 0)),
        // ±1/4, ±3/4
        new(WeightFormat.Q2Seq, "q2_seq", 2, 2, 0, 4, 3, new(2, 3, 4), 64, 0, GgmlType.Q2_K,
            new(true, -Quantizer.SeqClip, Quantizer.SeqClip, 0.75f)),
        // −2/3, 0, 2/3
        new(WeightFormat.Ternary, "ternary", 1.58, 2, 0, 3, 2, new(1, 1, 1.5f), 64, 0, GgmlType.TQ2_0,
            new(true, -Quantizer.SeqClip, Quantizer.SeqClip, 1f)),
        // ±1
        new(WeightFormat.Binary, "binary", 1, 1, 0, 2, 1, new(2, 1, 1), 128, 0, GgmlType.TQ2_0, new(false, -1, 1, 0)),
        // −8 … 7
        new(WeightFormat.Q4G32, "q4_g32", 4, 4, 0, 16, 15, new(1, 8, 1), 32, 32, GgmlType.Q4_0, null),
    ];

    /// <summary>The descriptor of a known format.</summary>
    public static WeightFormatInfo Of(WeightFormat f) =>
        IsKnown(f) ? s_table[(int)f] : throw new ArgumentOutOfRangeException(nameof(f), f, "unknown weight format");

    /// <summary>Every format, in file-format order.</summary>
    public static IReadOnlyList<WeightFormatInfo> All => s_table;

    public static bool IsKnown(WeightFormat f) => (int)f < s_table.Length;

    /// <summary>Dense row-major floating-point formats (no tiling, no scales).</summary>
    public static bool IsFloat(WeightFormat f) => IsKnown(f) && s_table[(int)f].IsFloat;

    /// <summary>Integer-code formats stored in the tiled layout of <see cref="PackedLayout"/>.</summary>
    public static bool IsPacked(WeightFormat f) => IsKnown(f) && s_table[(int)f].IsPacked;

    /// <summary>The ParetoQ QAT grids (REFERENCE.md §1).</summary>
    public static bool IsParetoQ(WeightFormat f) => IsKnown(f) && s_table[(int)f].IsParetoQ;

    public static int CodeBits(WeightFormat f) => Of(f).CodeBits;

    /// <summary>Largest code value a format uses (codes are unsigned, 0..MaxCode).</summary>
    public static int MaxCode(WeightFormat f) => Of(f) is { IsPacked: true } info
        ? info.MaxCode : throw new ArgumentOutOfRangeException(nameof(f), f, "not an integer-code format");

    /// <summary>Inputs that share one scale: 32 for <see cref="WeightFormat.Q4G32"/>, 0 meaning "the whole row"
    /// otherwise.</summary>
    public static int GroupSize(WeightFormat f) => Of(f).GroupSize;

    public static double NominalBits(WeightFormat f) => Of(f).NominalBits;

    public static string Name(WeightFormat f) => Of(f).Name;

    public static bool TryParse(string name, out WeightFormat format)
    {
        foreach (var info in s_table)
        {
            if (info.Name == name) { format = info.Format; return true; }
        }
        format = default;
        return false;
    }

    /// <summary>The ParetoQ format for a bit width as users write it: 1, 1.58, 2, 3, 4.</summary>
    public static WeightFormat FromParetoQBits(double bits) =>
        s_table.FirstOrDefault(i => i.IsParetoQ && i.NominalBits == bits)?.Format
        ?? throw new ArgumentOutOfRangeException(nameof(bits), bits, "ParetoQ bit widths are 1, 1.58, 2, 3 and 4");

    /// <summary>Formats an embedding and output head can take (the ParetoQ grids are for projections).</summary>
    public static readonly WeightFormat[] HeadFormats = [WeightFormat.I8Row, WeightFormat.Q4G32, WeightFormat.F16,
        WeightFormat.BF16, WeightFormat.F32];

    /// <summary>
    /// The one spelling of a weight format on every command line (--bits, --head, --format(s), --ptq): its name, as
    /// <c>paretoq-convert inspect</c> prints it, or for a ParetoQ grid its bit width as the paper writes it (1, 1.58,
    /// 2, 3, 4).
    /// </summary>
    public static bool TryParseOption(string text, out WeightFormat format)
    {
        if (TryParse(text, out format)) return true;
        var grid = s_table.FirstOrDefault(i => i.IsParetoQ
            && i.NominalBits.ToString(System.Globalization.CultureInfo.InvariantCulture) == text);
        format = grid?.Format ?? default;
        return grid is not null;
    }

    /// <summary>Every spelling <see cref="TryParseOption"/> accepts for the formats <paramref name="accepted"/> lets
    /// through, widths first: for an option's list of allowed values.</summary>
    public static string[] OptionNames(Func<WeightFormat, bool> accepted) =>
    [
        .. s_table.Where(i => i.IsParetoQ && accepted(i.Format))
            .Select(i => i.NominalBits.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        .. s_table.Where(i => accepted(i.Format)).Select(i => i.Name),
    ];

    /// <summary><see cref="TryParseOption"/> for a value an option already restricted to
    /// <see cref="OptionNames"/>.</summary>
    public static WeightFormat ParseOption(string text) => TryParseOption(text, out var format) ? format
        : throw new ArgumentException($"'{text}' is not a weight format ({string.Join(", ", OptionNames(_ => true))})");

    /// <summary>The affine code → value map of a packed format.</summary>
    public static AffineCodes Affine(WeightFormat f) => Of(f) is { IsPacked: true } info
        ? info.Affine : throw new ArgumentException($"{f} is not a packed integer format", nameof(f));
}
