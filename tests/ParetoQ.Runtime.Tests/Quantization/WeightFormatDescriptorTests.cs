using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// Every consumer of a weight format's facts against its descriptor (<see cref="WeightFormats.Of"/>), for every
/// format: names, the packed layout's geometry, the quantizer's levels and values, the kernels' multiplier, the GGUF
/// export type's integer range, the GPU's line form and the trainer's grid.
/// </summary>
public sealed class WeightFormatDescriptorTests
{
    public static TheoryData<WeightFormat> AllFormats() => new(WeightFormats.All.Select(i => i.Format));

    [Theory]
    [MemberData(nameof(AllFormats))]
    public void Names_bits_and_float_sizes_come_from_the_descriptor(WeightFormat format)
    {
        var info = WeightFormats.Of(format);
        Assert.Equal(format, info.Format);
        Assert.True(WeightFormats.TryParse(info.Name, out var parsed));
        Assert.Equal(format, parsed);
        Assert.Equal(info.Name, WeightFormats.Name(format));
        Assert.Equal(info.CodeBits, WeightFormats.CodeBits(format));
        Assert.Equal(info.IsFloat, WeightFormats.IsFloat(format));
        Assert.Equal(info.IsPacked, WeightFormats.IsPacked(format));
        if (info.IsFloat) Assert.Equal(info.CodeBits / 8, FloatCodec.ElementBytes(format));
        if (info.IsParetoQ) Assert.Equal(format, WeightFormats.FromParetoQBits(info.NominalBits));

        // One spelling on every command line: the name, or a ParetoQ grid's width, and convert's --bits/--head agree.
        Assert.True(WeightFormats.TryParseOption(info.Name, out var option));
        Assert.Equal(format, option);
        string width = info.NominalBits.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(info.IsParetoQ, WeightFormats.TryParseOption(width, out var byWidth) && byWidth == format);
        if (Conversion.ConversionOptions.BitsNames.TryGetValue(info.Name, out var choice))
            Assert.Equal(choice, Conversion.ConversionOptions.BitsNames[info.IsParetoQ ? width : info.Name]);
        Assert.Equal(WeightFormats.HeadFormats.Contains(format),
            Conversion.ConversionOptions.HeadNames.TryGetValue(info.Name, out var head) && head == format);
    }

    [Theory]
    [MemberData(nameof(AllFormats))]
    public void The_packed_layout_and_the_kernels_read_its_geometry(WeightFormat format)
    {
        var info = WeightFormats.Of(format);
        if (!info.IsPacked) return;
        foreach (var (rows, cols) in new[] { (1, 1), (5, 33), (9, 300) })
        {
            var layout = new PackedLayout(format, rows, cols);
            Assert.Equal(info.CodeBits, layout.CodeBits);
            Assert.Equal(0, layout.PaddedCols % info.BlockCols);
            Assert.True(layout.PaddedCols - cols < info.BlockCols);
            Assert.Equal(info.GroupSize == 0 ? layout.PaddedCols : info.GroupSize, layout.GroupSize);
        }
        // One block of the chunk arrangement is one decodable unit of the integer kernels.
        Assert.Equal(info.BlockCols, CodeUnits.UnitCols(info.CodeBits));
        Assert.Equal(info.MaxCode, (1 << info.CodeBits) - 1 - (format == WeightFormat.Ternary ? 1 : 0));
    }

    [Theory]
    [MemberData(nameof(AllFormats))]
    public void The_quantizer_produces_its_levels_and_the_kernels_its_values(WeightFormat format)
    {
        var info = WeightFormats.Of(format);
        if (!info.IsPacked) return;
        const float scale = 0.37f;
        // Sweep weights across the grid and past both ends.
        float range = 1.5f * scale * Math.Max(info.Affine.B,
            info.Affine.A * info.MaxCode - info.Affine.B) / info.Affine.Divisor;
        var codes = new SortedSet<int>();
        for (int i = -10000; i <= 10000; i++) codes.Add(Quantizer.Quantize(format, i / 10000f * range, scale));
        Assert.Equal(info.Levels, codes.Count);
        Assert.True(codes.Max <= info.MaxCode);
        foreach (int code in codes)
        {
            float value = Quantizer.Dequantize(format, code, scale);
            Assert.Equal(info.Affine.Value(code, scale), value);
            Assert.Equal(code, Quantizer.Quantize(format, value, scale)); // every level maps back to its code
            // The integer kernels form scale · multiplier · (A·code − B): within one rounding of the value.
            float kernel = scale * info.Affine.Multiplier * (info.Affine.A * code - info.Affine.B);
            Assert.True(Math.Abs(kernel - value) <= Math.Abs(value) * 2e-7f,
                $"code {code}: kernel {kernel:R}, value {value:R}");
            // The GPU's line form is the same map.
            var (slope, intercept) = info.Affine.Line;
            Assert.True(Math.Abs(scale * (slope * code + intercept) - value) <= Math.Abs(value) * 4e-7f);
        }
    }

    [Theory]
    [MemberData(nameof(AllFormats))]
    public void The_gguf_type_holds_every_level(WeightFormat format)
    {
        var info = WeightFormats.Of(format);
        if (info.IsFloat)
        {
            Assert.Equal(info.CodeBits, GgmlTypes.Block(info.Gguf).Bytes * 8);
            return;
        }
        // The integer range of each ggml block type's stored levels (TQ2_0 stores level + 1, Q4_0 level + 8, Q2_K the
        // code).
        var (low, high) = info.Gguf switch
        {
            GgmlType.TQ2_0 => (-1, 1),
            GgmlType.Q4_0 => (-8, 7),
            GgmlType.Q8_0 => (-128, 127),
            GgmlType.Q2_K => (-3, 3),
            _ => throw new Xunit.Sdk.XunitException($"{info.Gguf} is no block type for a packed format"),
        };
        for (int code = format == WeightFormat.I8Row ? 1 : 0; code <= info.MaxCode; code++)
        {
            int level = info.Affine.A * code - info.Affine.B;
            Assert.InRange(level, low, high);
        }
    }

    [Theory]
    [MemberData(nameof(AllFormats))]
    public void The_trainer_grid_is_the_fake_quantizers_range(WeightFormat format)
    {
        var info = WeightFormats.Of(format);
        Assert.Equal(info.IsParetoQ, WeightFormats.IsParetoQ(format));
        if (info.Grid is not { } grid) return;
        const float alpha = 0.5f;
        // Far outside the grid the forward lands on its end levels: α·Qn and α·Qp for LSQ, the clipped levels for SEQ.
        float top = Quantizer.FakeQuantize(format, 100f, alpha), bottom = Quantizer.FakeQuantize(format, -100f, alpha);
        Assert.Equal(info.Affine.Value(info.MaxCode, alpha), top);
        if (!grid.Seq)
        {
            Assert.Equal(alpha * grid.Qp, top);
            Assert.Equal(alpha * grid.Qn, bottom);
        }
        else
        {
            Assert.Equal(Quantizer.FakeQuantize(format, grid.Qp * alpha, alpha), top);
            Assert.Equal(Quantizer.FakeQuantize(format, grid.Qn * alpha, alpha), bottom);
            Assert.Equal(Quantizer.SeqClip, grid.Qp);
        }
    }
}
