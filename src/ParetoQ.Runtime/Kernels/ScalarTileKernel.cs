using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// The reference integer kernel: read each code with <see cref="WeightPacker.Code"/> and sum code·x in a plain loop.
/// Every SIMD path must produce exactly these sums.
/// </summary>
internal unsafe struct ScalarTileKernel : ITileKernel
{
    public static void GroupedDot(in PackedMatrix w, int tile, QuantizedActivations x, int token0, int count,
        float* acc) =>
        LowBitMatMul.GroupedDotFromSums<ScalarTileKernel>(w, tile, x, token0, count, acc);

    public static void DecodeSums(in PackedMatrix w, int tile0, int tiles, QuantizedActivations x, int token,
        int* sums) =>
        LowBitMatMul.DecodeSumsPerTile<ScalarTileKernel>(w, tile0, tiles, x, token, sums);

    public static void Sums(in PackedMatrix w, int tile, int unitBegin, int groups, int unitsPerGroup,
        QuantizedActivations x, int token0, int count, int* sums)
    {
        var layout = w.Layout;
        int unitCols = CodeUnits.UnitCols(layout.CodeBits);
        var tensor = new ReadOnlySpan<byte>(w.Codes, checked((int)layout.CodeBytes));
        for (int r = 0; r < PackedLayout.TileRows; r++)
        {
            int row = tile * PackedLayout.TileRows + r;
            for (int g = 0; g < groups; g++)
            {
                int begin = (unitBegin + g * unitsPerGroup) * unitCols, end = begin + unitsPerGroup * unitCols;
                for (int t = 0; t < count; t++)
                {
                    var xt = x.Row(token0 + t);
                    int s = 0;
                    for (int k = begin; k < end; k++) s += WeightPacker.Code(layout, tensor, row, k) * xt[k];
                    sums[(g * count + t) * PackedLayout.TileRows + r] = s;
                }
            }
        }
    }
}
