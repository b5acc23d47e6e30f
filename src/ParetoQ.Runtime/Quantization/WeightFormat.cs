namespace ParetoQ.Runtime.Quantization;

/// <summary>Storage format of one tensor in a .pq file. The numeric values are part of the file format: never renumber.</summary>
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

/// <summary>Static facts about each <see cref="WeightFormat"/>: the format → layout table.</summary>
public static class WeightFormats
{
    public static bool IsKnown(WeightFormat f) => f <= WeightFormat.Q4G32;

    /// <summary>Dense row-major floating-point formats (no tiling, no scales).</summary>
    public static bool IsFloat(WeightFormat f) => f is WeightFormat.F32 or WeightFormat.F16 or WeightFormat.BF16;

    /// <summary>Integer-code formats stored in the tiled layout of <see cref="PackedLayout"/>.</summary>
    public static bool IsPacked(WeightFormat f) => IsKnown(f) && !IsFloat(f);

    /// <summary>The ParetoQ QAT grids (REFERENCE.md §1).</summary>
    public static bool IsParetoQ(WeightFormat f) => f is WeightFormat.Binary or WeightFormat.Ternary or WeightFormat.Q2Seq or WeightFormat.Q3Row or WeightFormat.Q4Row;

    /// <summary>Bits per stored code (ternary is held in 2 bits).</summary>
    public static int CodeBits(WeightFormat f) => f switch
    {
        WeightFormat.Binary => 1,
        WeightFormat.Ternary or WeightFormat.Q2Seq => 2,
        WeightFormat.Q3Row => 3,
        WeightFormat.Q4Row or WeightFormat.Q4G32 => 4,
        WeightFormat.I8Row => 8,
        WeightFormat.F16 or WeightFormat.BF16 => 16,
        WeightFormat.F32 => 32,
        _ => throw new ArgumentOutOfRangeException(nameof(f), f, "unknown weight format"),
    };

    /// <summary>Largest code value a format uses (codes are unsigned, 0..MaxCode).</summary>
    public static int MaxCode(WeightFormat f) => f switch
    {
        WeightFormat.Binary => 1,
        WeightFormat.Ternary => 2,
        WeightFormat.Q2Seq => 3,
        WeightFormat.Q3Row => 7,
        WeightFormat.Q4Row or WeightFormat.Q4G32 => 15,
        WeightFormat.I8Row => 255,
        _ => throw new ArgumentOutOfRangeException(nameof(f), f, "not an integer-code format"),
    };

    /// <summary>Inputs that share one scale: 32 for <see cref="WeightFormat.Q4G32"/>, 0 meaning "the whole row" otherwise.</summary>
    public static int GroupSize(WeightFormat f) => f == WeightFormat.Q4G32 ? 32 : 0;

    /// <summary>Nominal bits per weight as users name them (1.58 for ternary).</summary>
    public static double NominalBits(WeightFormat f) => f == WeightFormat.Ternary ? 1.58 : CodeBits(f);

    /// <summary>The name used in .pq metadata and on the command line.</summary>
    public static string Name(WeightFormat f) => f switch
    {
        WeightFormat.F32 => "f32",
        WeightFormat.F16 => "f16",
        WeightFormat.BF16 => "bf16",
        WeightFormat.I8Row => "i8_row",
        WeightFormat.Q4Row => "q4_row",
        WeightFormat.Q3Row => "q3_row",
        WeightFormat.Q2Seq => "q2_seq",
        WeightFormat.Ternary => "ternary",
        WeightFormat.Binary => "binary",
        WeightFormat.Q4G32 => "q4_g32",
        _ => throw new ArgumentOutOfRangeException(nameof(f), f, "unknown weight format"),
    };

    public static bool TryParse(string name, out WeightFormat format)
    {
        for (var f = WeightFormat.F32; f <= WeightFormat.Q4G32; f++)
        {
            if (Name(f) == name) { format = f; return true; }
        }
        format = default;
        return false;
    }

    /// <summary>The ParetoQ format for a bit width as users write it: 1, 1.58, 2, 3, 4.</summary>
    public static WeightFormat FromParetoQBits(double bits) => bits switch
    {
        1 => WeightFormat.Binary,
        1.58 => WeightFormat.Ternary,
        2 => WeightFormat.Q2Seq,
        3 => WeightFormat.Q3Row,
        4 => WeightFormat.Q4Row,
        _ => throw new ArgumentOutOfRangeException(nameof(bits), bits, "ParetoQ bit widths are 1, 1.58, 2, 3 and 4"),
    };
}
