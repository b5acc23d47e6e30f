using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using ParetoQ.Trainer;

namespace ParetoQ.Runtime.Tests;

/// <summary>The PNG charts, decoded here from the PNG specification: chunk CRCs, header, zlib scanlines, and the pixels
/// drawn.</summary>
public sealed class TrainerChartTests
{
    [Fact]
    public void A_chart_is_a_valid_png_with_its_lines_drawn()
    {
        using var dir = new TempDir();
        var line = new ChartSeries("fp train", [.. Enumerable.Range(0, 50).Select(i => ((double)i, 10 - 0.1 * i))]);
        var dots = new ChartSeries("fp val", [(10.0, 9.2), (40.0, 6.5)], Markers: true);
        Chart.Write(dir.File("loss.png"), "training loss", "step", "loss", [line, dots]);

        var (width, height, pixel) = DecodePng(dir.File("loss.png"));
        var colors = new Dictionary<(byte, byte, byte), int>();
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++) colors[pixel(x, y)] = colors.GetValueOrDefault(pixel(x, y)) + 1;
        Assert.True(colors[(255, 255, 255)] > width * height / 2, "mostly white background");
        Assert.True(colors.GetValueOrDefault(((byte)31, (byte)119, (byte)180)) > 500,
            "the first series' line is drawn");
        Assert.True(colors.GetValueOrDefault(((byte)214, (byte)39, (byte)40)) > 40,
            "the second series' markers are drawn");
        Assert.Throws<ArgumentException>(()
            => Chart.Write(dir.File("empty.png"), "t", "x", "y", [new ChartSeries("nan", [(double.NaN, 1.0)])]));
    }

    [Fact]
    public void A_logarithmic_axis_puts_each_decade_an_equal_height_apart()
    {
        using var dir = new TempDir();
        // 1, 10, 100, 1000 at x = 0..3: on a log axis 10 sits a third of the way up, on a linear one at the bottom.
        var decades = new ChartSeries("decades", [(0.0, 1.0), (1.0, 10.0), (2.0, 100.0), (3.0, 1000.0)], Markers: true);
        Chart.Write(dir.File("log.png"), "t", "x", "y", [decades], logY: true);
        Chart.Write(dir.File("linear.png"), "t", "x", "y", [decades]);
        var blue = ((byte)31, (byte)119, (byte)180);
        // The plot is 640 × 460 pixels from (80, 40); the x axis runs 0..3.
        int x10 = 80 + 640 / 3, logY10 = 40 + 460 - 460 / 3, linearY10 = 40 + 460 - 5;
        Assert.Equal(blue, DecodePng(dir.File("log.png")).Pixel(x10, logY10));
        Assert.NotEqual(blue, DecodePng(dir.File("linear.png")).Pixel(x10, logY10));
        Assert.Equal(blue, DecodePng(dir.File("linear.png")).Pixel(x10, linearY10));
        var error = Assert.Throws<ArgumentException>(()
            => Chart.Write(dir.File("zero.png"), "t", "x", "y", [new ChartSeries("z", [(0.0, 0.0), (1.0, 2.0)])],
                logY: true));
        Assert.Contains("positive", error.Message);
    }

    // Checks the signature, every chunk's CRC, the header (8-bit RGB) and each scanline's filter byte.
    private static (int Width, int Height, Func<int, int, (byte, byte, byte)> Pixel) DecodePng(string path)
    {
        byte[] png = File.ReadAllBytes(path);
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, png[..8]);
        var chunks = new List<(string Type, byte[] Data)>();
        for (int at = 8; at < png.Length;)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
            string type = System.Text.Encoding.ASCII.GetString(png, at + 4, 4);
            byte[] data = png[(at + 8)..(at + 8 + length)];
            Assert.Equal(BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at + 8 + length)),
                Crc32.HashToUInt32(png.AsSpan(at + 4, 4 + length)));
            chunks.Add((type, data));
            at += 12 + length;
        }
        Assert.Equal(["IHDR", "IDAT", "IEND"], chunks.Select(c => c.Type));
        int width = BinaryPrimitives.ReadInt32BigEndian(chunks[0].Data),
            height = BinaryPrimitives.ReadInt32BigEndian(chunks[0].Data.AsSpan(4));
        Assert.Equal([8, 2, 0, 0, 0], chunks[0].Data[8..13].Select(b => (int)b));
        using var inflated = new MemoryStream();
        using (var z = new ZLibStream(new MemoryStream(chunks[1].Data), CompressionMode.Decompress)) z.CopyTo(inflated);
        byte[] raw = inflated.ToArray();
        Assert.Equal((width * 3 + 1) * height, raw.Length);
        for (int y = 0; y < height; y++) Assert.Equal(0, raw[y * (width * 3 + 1)]); // filter type 0
        return (width, height, (x, y) =>
        {
            int i = y * (width * 3 + 1) + 1 + x * 3;
            return (raw[i], raw[i + 1], raw[i + 2]);
        });
    }
}
