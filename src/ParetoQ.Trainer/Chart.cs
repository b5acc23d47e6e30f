using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.IO.Hashing;
using ParetoQ.Runtime.Format;

namespace ParetoQ.Trainer;

/// <summary>
/// One line of a chart: its name in the legend and its (x, y) points; <see cref="Markers"/> draws dots instead of a
/// line. A series with an empty name draws in the colour of the named series before it and has no legend entry.
/// </summary>
public sealed record ChartSeries(string Name, IReadOnlyList<(double X, double Y)> Points, bool Markers = false);

/// <summary>
/// Line charts as PNG files, with no graphics library: an RGB canvas, axes with 1-2-5 ticks and labels in a built-in
/// 5×7 pixel font, a legend, and a PNG encoder (zlib-compressed scanlines, CRC-32 per chunk). With a logarithmic y
/// axis the ticks are 1, 2 and 5 × 10^k, so values that span decades (a perplexity of 4 beside one of 2000) stay
/// readable.
/// </summary>
public static class Chart
{
    private const int Width = 900, Height = 560, Left = 80, Right = 180, Top = 40, Bottom = 60;
    private static readonly (byte R, byte G, byte B)[] Palette =
        [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207), (140, 86, 75),
            (127, 127, 127)];

    public static void Write(string path, string title, string xLabel, string yLabel, IReadOnlyList<ChartSeries> series,
        bool overwrite = true, bool logY = false)
    {
        var points = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
        if (points.Count == 0) throw new ArgumentException("nothing to plot: no finite points");
        double yMin = points.Min(p => p.Y), yMax = points.Max(p => p.Y);
        if (logY && yMin <= 0)
            throw new ArgumentException($"a logarithmic y axis needs positive values; the smallest is {yMin}");
        var canvas = new Canvas(Width, Height);
        var (x0, x1, xStep) = Ticks(points.Min(p => p.X), points.Max(p => p.X));
        var (y0, y1, yStep) = Ticks(yMin, yMax);
        var yTicks = logY ? LogTicks(yMin, yMax) : LinearTicks(y0, y1, yStep);
        if (logY) (y0, y1) = (yTicks[0], yTicks[^1]);
        Func<double, double> yScale = logY ? Math.Log10 : y => y;
        int plotW = Width - Left - Right, plotH = Height - Top - Bottom;
        int Px(double x) => Left + (int)Math.Round((x - x0) / (x1 - x0) * plotW);
        int Py(double y) => Top + plotH - (int)Math.Round((yScale(y) - yScale(y0)) / (yScale(y1) - yScale(y0)) * plotH);

        var grid = ((byte)230, (byte)230, (byte)230);
        var ink = ((byte)40, (byte)40, (byte)40);
        for (double x = x0; x <= x1 + xStep / 2; x += xStep)
        {
            canvas.Line(Px(x), Top, Px(x), Top + plotH, grid);
            string label = Label(x, xStep);
            canvas.Text(Px(x) - label.Length * 3, Top + plotH + 8, label, ink);
        }
        foreach (double y in yTicks)
        {
            canvas.Line(Left, Py(y), Left + plotW, Py(y), grid);
            string label = Label(y, logY ? y : yStep);
            canvas.Text(Left - 8 - label.Length * 6, Py(y) - 3, label, ink);
        }
        canvas.Rectangle(Left, Top, Left + plotW, Top + plotH, ink);
        canvas.Text(Left + plotW / 2 - xLabel.Length * 3, Height - 24, xLabel, ink);
        canvas.Text(8, Top - 24, yLabel, ink);
        canvas.Text(Left + plotW / 2 - title.Length * 3, 12, title, ink);

        int legendRows = 0, colorIndex = -1;
        for (int i = 0; i < series.Count; i++)
        {
            if (series[i].Name.Length > 0) colorIndex++; // markers without a name share their line's colour
            var color = Palette[Math.Max(0, colorIndex) % Palette.Length];
            var pts = series[i].Points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
            if (series[i].Markers)
                foreach (var p in pts) canvas.Dot(Px(p.X), Py(p.Y), 3, color);
            else
                for (int k = 1; k < pts.Count; k++) canvas.Line(Px(pts[k - 1].X), Py(pts[k - 1].Y), Px(pts[k].X),
                    Py(pts[k].Y), color, thick: true);
            // an unnamed series (markers over a named line) has no legend entry
            if (series[i].Name.Length == 0) continue;
            int ly = Top + 10 + legendRows++ * 18;
            canvas.Line(Width - Right + 14, ly + 3, Width - Right + 34, ly + 3, color, thick: true);
            canvas.Text(Width - Right + 40, ly, series[i].Name, ink);
        }
        AtomicFile.Write(path, overwrite, fs => fs.Write(canvas.Png()));
    }

    // Axis range widened to whole ticks of 1, 2 or 5 × 10^k, about 5–10 of them.
    private static (double Low, double High, double Step) Ticks(double min, double max)
    {
        if (max <= min) (min, max) = (min - 0.5 * Math.Max(1, Math.Abs(min)), max + 0.5 * Math.Max(1, Math.Abs(max)));
        double raw = (max - min) / 6, magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1, 2, 5, 10 }.Select(f => f * magnitude).First(s => s >= raw);
        return (Math.Floor(min / step) * step, Math.Ceiling(max / step) * step, step);
    }

    private static List<double> LinearTicks(double low, double high, double step)
    {
        var ticks = new List<double>();
        for (double v = low; v <= high + step / 2; v += step) ticks.Add(v);
        return ticks;
    }

    // 1, 2 and 5 × 10^k from the one at or below the smallest value to the one at or above the largest.
    private static List<double> LogTicks(double min, double max)
    {
        var all = new List<double>();
        for (int k = (int)Math.Floor(Math.Log10(min)); k <= (int)Math.Ceiling(Math.Log10(max)); k++)
            foreach (int f in (int[])[1, 2, 5]) all.Add(f * Math.Pow(10, k));
        int first = all.FindLastIndex(v => v <= min * (1 + 1e-9)), last = all.FindIndex(v => v >= max * (1 - 1e-9));
        if (last == first) last++;
        return all.GetRange(first, last - first + 1);
    }

    private static string Label(double value, double step) =>
        step >= 1 ? value.ToString("0", CultureInfo.InvariantCulture)
            : value.ToString("0." + new string('#', Math.Min(6, (int)Math.Ceiling(-Math.Log10(step)))),
            CultureInfo.InvariantCulture);

    private sealed class Canvas(int width, int height)
    {
        private readonly byte[] _rgb = Enumerable.Repeat((byte)255, width * height * 3).ToArray();

        public void Set(int x, int y, (byte R, byte G, byte B) c)
        {
            if ((uint)x >= (uint)width || (uint)y >= (uint)height) return;
            int i = (y * width + x) * 3;
            (_rgb[i], _rgb[i + 1], _rgb[i + 2]) = c;
        }

        // Bresenham; thick lines also set the pixel below and to the right.
        public void Line(int x0, int y0, int x1, int y1, (byte, byte, byte) c, bool thick = false)
        {
            int dx = Math.Abs(x1 - x0), dy = -Math.Abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1,
                err = dx + dy;
            while (true)
            {
                Set(x0, y0, c);
                if (thick) { Set(x0 + 1, y0, c); Set(x0, y0 + 1, c); }
                if (x0 == x1 && y0 == y1) return;
                int e2 = 2 * err;
                if (e2 >= dy) { err += dy; x0 += sx; }
                if (e2 <= dx) { err += dx; y0 += sy; }
            }
        }

        public void Rectangle(int x0, int y0, int x1, int y1, (byte, byte, byte) c)
        {
            Line(x0, y0, x1, y0, c); Line(x1, y0, x1, y1, c); Line(x1, y1, x0, y1, c); Line(x0, y1, x0, y0, c);
        }

        public void Dot(int x, int y, int r, (byte, byte, byte) c)
        {
            for (int dy = -r; dy <= r; dy++)
                for (int dx = -r; dx <= r; dx++)
                    if (dx * dx + dy * dy <= r * r) Set(x + dx, y + dy, c);
        }

        public void Text(int x, int y, string text, (byte, byte, byte) c)
        {
            foreach (char ch in text)
            {
                if (Font.Glyph(ch) is { } rows)
                    for (int r = 0; r < rows.Length; r++)
                        for (int col = 0; col < 5; col++)
                            if ((rows[r] >> (4 - col) & 1) != 0) Set(x + col, y + r, c);
                x += 6;
            }
        }

        public byte[] Png()
        {
            var raw = new byte[(width * 3 + 1) * height]; // each scanline: filter type 0, then RGB
            for (int y = 0; y < height; y++) Array.Copy(_rgb, y * width * 3, raw, y * (width * 3 + 1) + 1, width * 3);
            using var compressed = new MemoryStream();
            using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true)) z.Write(raw);
            using var png = new MemoryStream();
            png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
            var header = new byte[13];
            BinaryPrimitives.WriteInt32BigEndian(header, width);
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
            header[8] = 8; // bits per channel
            header[9] = 2; // colour type: RGB
            Chunk(png, "IHDR", header);
            Chunk(png, "IDAT", compressed.ToArray());
            Chunk(png, "IEND", []);
            return png.ToArray();
        }

        private static void Chunk(Stream s, string type, byte[] data)
        {
            var head = new byte[8];
            BinaryPrimitives.WriteInt32BigEndian(head, data.Length);
            System.Text.Encoding.ASCII.GetBytes(type, head.AsSpan(4));
            s.Write(head);
            s.Write(data);
            var crc = new Crc32();
            crc.Append(head.AsSpan(4));
            crc.Append(data);
            var sum = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(sum, crc.GetCurrentHashAsUInt32());
            s.Write(sum);
        }
    }

    /// <summary>A 5×7 pixel font for digits, lowercase and uppercase letters and the symbols chart labels
    /// use.</summary>
    private static class Font
    {
        // Each glyph: 7 rows of 5 pixels, '#' set; rows separated by '/'. g, j, p, q and y have two more rows: their
        // bodies sit on the x-height of the other lowercase letters and their tails descend below the baseline.
        private static readonly Dictionary<char, string> Glyphs = new()
        {
            ['0'] = ".###./#...#/#..##/#.#.#/##..#/#...#/.###.", ['1'] = "..#../.##../..#../..#../..#../..#../.###.",
            ['2'] = ".###./#...#/....#/...#./..#../.#.../#####", ['3'] = "#####/...#./..#../...#./....#/#...#/.###.",
            ['4'] = "...#./..##./.#.#./#..#./#####/...#./...#.", ['5'] = "#####/#..../####./....#/....#/#...#/.###.",
            ['6'] = "..##./.#.../#..../####./#...#/#...#/.###.", ['7'] = "#####/....#/...#./..#../.#.../.#.../.#...",
            ['8'] = ".###./#...#/#...#/.###./#...#/#...#/.###.", ['9'] = ".###./#...#/#...#/.####/....#/...#./.##..",
            ['.'] = "...../...../...../...../...../.##../.##..", ['-'] = "...../...../...../#####/...../...../.....",
            ['+'] = "...../..#../..#../#####/..#../..#../.....", [':'] = "...../.##../.##../...../.##../.##../.....",
            ['('] = "...#./..#../.#.../.#.../.#.../..#../...#.", [')'] = ".#.../..#../...#./...#./...#./..#../.#...",
            ['/'] = "...../....#/...#./..#../.#.../#..../.....", ['%'] = "##.../##..#/...#./..#../.#.../#..##/...##",
            ['_'] = "...../...../...../...../...../...../#####", [','] = "...../...../...../...../.##../..#../.#...",
            ['='] = "...../...../#####/...../#####/...../.....", ['×'] = "...../#...#/.#.#./..#../.#.#./#...#/.....",
            ['a'] = "...../...../.###./....#/.####/#...#/.####", ['b'] = "#..../#..../#.##./##..#/#...#/#...#/####.",
            ['c'] = "...../...../.###./#..../#..../#...#/.###.", ['d'] = "....#/....#/.##.#/#..##/#...#/#...#/.####",
            ['e'] = "...../...../.###./#...#/#####/#..../.###.", ['f'] = "..##./.#..#/.#.../###../.#.../.#.../.#...",
            ['g'] = "...../...../.####/#...#/#...#/.####/....#/#...#/.###.", ['h'] = "#..../#..../#.##./##..#/#...#/#...#/#...#",
            ['i'] = "..#../...../.##../..#../..#../..#../.###.", ['j'] = "...#./...../..##./...#./...#./...#./...#./#..#./.##..",
            ['k'] = "#..../#..../#..#./#.#../##.../#.#../#..#.", ['l'] = ".##../..#../..#../..#../..#../..#../.###.",
            ['m'] = "...../...../##.#./#.#.#/#.#.#/#...#/#...#", ['n'] = "...../...../#.##./##..#/#...#/#...#/#...#",
            ['o'] = "...../...../.###./#...#/#...#/#...#/.###.", ['p'] = "...../...../####./#...#/#...#/####./#..../#..../#....",
            ['q'] = "...../...../.####/#...#/#...#/.####/....#/....#/....#", ['r'] = "...../...../#.##./##..#/#..../#..../#....",
            ['s'] = "...../...../.###./#..../.###./....#/####.", ['t'] = ".#.../.#.../###../.#.../.#.../.#..#/..##.",
            ['u'] = "...../...../#...#/#...#/#...#/#..##/.##.#", ['v'] = "...../...../#...#/#...#/#...#/.#.#./..#..",
            ['w'] = "...../...../#...#/#...#/#.#.#/#.#.#/.#.#.", ['x'] = "...../...../#...#/.#.#./..#../.#.#./#...#",
            ['y'] = "...../...../#...#/#...#/#...#/.####/....#/#...#/.###.", ['z'] = "...../...../#####/...#./..#../.#.../#####",
        };

        private static readonly Dictionary<char,
            int[]> Parsed = Glyphs.ToDictionary(g => g.Key, g
            => g.Value.Split('/').Select(row
            => row.Aggregate(0, (bits, ch) => bits << 1 | (ch == '#' ? 1 : 0))).ToArray());

        /// <summary>The glyph's rows (7, or 9 with a descender; 5 low bits each); uppercase letters use their lowercase glyph; null for a space
        /// or an unknown character.</summary>
        public static int[]? Glyph(char ch)
            => Parsed.GetValueOrDefault(char.IsAsciiLetterUpper(ch) ? char.ToLowerInvariant(ch) : ch);
    }
}
