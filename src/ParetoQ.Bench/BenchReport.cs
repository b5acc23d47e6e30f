using System.Globalization;
using System.Text.Json;
using ParetoQ.CommandLine;

namespace ParetoQ.Bench;

/// <summary>How a report is written: an aligned table, a markdown table (llama-bench's default), CSV, one JSON
/// document, or one JSON object per row.</summary>
public enum ReportFormat { Table, Markdown, Csv, Json, Jsonl }

/// <summary>Repeated measurements of one quantity: the mean ± the sample standard deviation over Count
/// runs.</summary>
public readonly record struct Spread(double Mean, double Sd, int Count)
{
    public static Spread Of(IReadOnlyList<double> samples)
    {
        double mean = samples.Average();
        double sd = samples.Count < 2 ? 0
            : Math.Sqrt(samples.Sum(s => (s - mean) * (s - mean)) / (samples.Count - 1));
        return new(mean, sd, samples.Count);
    }
}

/// <summary>
/// Rows of named values with facts that hold for every row (machine, threads, path). Table and markdown print the facts
/// around the rows; CSV and JSON lines repeat them in every row, so each line stands alone; JSON nests the rows. A
/// <see cref="Spread"/> prints as "mean ± sd" and is written as two numbers, key and key_sd.
/// </summary>
public sealed class BenchReport(string mode)
{
    private readonly List<List<(string Key, object Value)>> _rows = [];
    private readonly List<(string Key, object Value)> _facts = [];
    private readonly List<(string Key, object Value)> _footer = [];

    /// <summary>Facts about the run (machine, threads, path) that apply to every row.</summary>
    public void Fact(string key, object value) => _facts.Add((key, value));

    /// <summary>Facts printed after the rows in a table (build, CPU), as llama-bench prints its build line.</summary>
    public void Footer(string key, object value) => _footer.Add((key, value));

    public void Row(params (string Key, object Value)[] values) => _rows.Add([.. values]);

    public static ReportFormat ParseFormat(string name) => name switch
    {
        "md" or "markdown" => ReportFormat.Markdown,
        "csv" => ReportFormat.Csv,
        "json" => ReportFormat.Json,
        "jsonl" => ReportFormat.Jsonl,
        "table" => ReportFormat.Table,
        _ => throw new UsageException($"unknown output format '{name}' (md, csv, json, jsonl or table)"),
    };

    public void Print(bool json, TextWriter output) => Print(json ? ReportFormat.Json : ReportFormat.Table, output);

    public void Print(ReportFormat format, TextWriter output)
    {
        switch (format)
        {
            case ReportFormat.Json: PrintJson(output); return;
            case ReportFormat.Jsonl:
                foreach (var row in _rows) output.WriteLine(JsonObject([.. _facts, .. _footer, .. row]));
                return;
            case ReportFormat.Csv:
            {
                var keys = Columns([.. _facts, .. _footer], flat: true);
                output.WriteLine(string.Join(",", keys.Select(Csv)));
                foreach (var row in _rows)
                {
                    var cells = Flatten([.. _facts, .. _footer, .. row]);
                    output.WriteLine(string.Join(",", keys.Select(k => Csv(Number(Find(cells, k))))));
                }
                return;
            }
        }
        bool markdown = format == ReportFormat.Markdown;
        if (!markdown) foreach (var (k, v) in _facts) output.WriteLine($"{k}: {Text(v)}");
        if (_rows.Count > 0)
        {
            var keys = Columns(markdown ? _facts : [], flat: false);
            var rows = _rows.Select(r => markdown ? [.. _facts, .. r] : r).ToList();
            var widths = keys.Select(k => Math.Max(k.Length, rows.Max(r => Text(Find(r, k)).Length))).ToList();
            string Line(IEnumerable<string> cells) => markdown ? $"| {string.Join(" | ", cells)} |"
                : string.Join("  ", cells);
            output.WriteLine(Line(keys.Select((k, i) => k.PadLeft(widths[i]))));
            if (markdown) output.WriteLine(Line(widths.Select(w => new string('-', w - 1) + ":")));
            foreach (var row in rows)
                output.WriteLine(Line(keys.Select((k, i) => Text(Find(row, k)).PadLeft(widths[i]))));
        }
        if (markdown) output.WriteLine();
        foreach (var (k, v) in _footer) output.WriteLine($"{k}: {Text(v)}");
    }

    // Column names in first-seen order: the given facts first, then every row's keys (a Spread as key and key_sd when
    // flat).
    private List<string> Columns(List<(string Key, object Value)> facts, bool flat) =>
        facts.Concat(_rows.SelectMany(r => r)).SelectMany(c => flat && c.Value is Spread
            ? new[] { c.Key, c.Key + "_sd" } : [c.Key]).Distinct().ToList();

    private static List<(string Key, object Value)> Flatten(List<(string Key, object Value)> row) =>
        [.. row.SelectMany(c => c.Value is Spread s
            ? new (string, object)[] { (c.Key, s.Mean), (c.Key + "_sd", s.Sd) } : [c])];

    private void PrintJson(TextWriter output) => output.WriteLine(JsonText(indented: true, w =>
    {
        w.WriteString("mode", mode);
        foreach (var (k, v) in _facts.Concat(_footer)) Write(w, k, v);
        w.WriteStartArray("results");
        foreach (var row in _rows)
        {
            w.WriteStartObject();
            foreach (var (k, v) in row) Write(w, k, v);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }));

    private static string JsonObject(List<(string Key, object Value)> values) => JsonText(indented: false, w =>
    {
        foreach (var (k, v) in values) Write(w, k, v);
    });

    // One JSON object as text, its fields written by writeFields.
    private static string JsonText(bool indented, Action<Utf8JsonWriter> writeFields)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = indented }))
        {
            w.WriteStartObject();
            writeFields(w);
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static object? Find(List<(string Key, object Value)> row, string key)
    {
        foreach (var (k, v) in row) if (k == key) return v;
        return null;
    }

    private static string Text(object? v) => v switch
    {
        null => "",
        double d => d >= 100 ? d.ToString("F0") : d >= 10 ? d.ToString("F1") : d.ToString("F2"),
        float f => Text((double)f),
        Spread s => $"{s.Mean:F2} ± {s.Sd:F2}",
        _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
    };

    // CSV and JSON keep full precision (4 decimals), not the table's rounding.
    private static string Number(object? v) => v switch
    {
        null => "",
        double d => Math.Round(d, 4).ToString(CultureInfo.InvariantCulture),
        float f => Math.Round(f, 4).ToString(CultureInfo.InvariantCulture),
        _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
    };

    private static string Csv(string cell) =>
        cell.IndexOfAny([',', '"', '\n']) < 0 ? cell : $"\"{cell.Replace("\"", "\"\"")}\"";

    private static void Write(Utf8JsonWriter w, string key, object v)
    {
        switch (v)
        {
            case double d: w.WriteNumber(key, Math.Round(d, 4)); break;
            case float f: w.WriteNumber(key, Math.Round(f, 4)); break;
            case int i: w.WriteNumber(key, i); break;
            case long l: w.WriteNumber(key, l); break;
            case bool b: w.WriteBoolean(key, b); break;
            case Spread s:
                w.WriteNumber(key, Math.Round(s.Mean, 4));
                w.WriteNumber(key + "_sd", Math.Round(s.Sd, 4));
                break;
            default: w.WriteString(key, Convert.ToString(v, CultureInfo.InvariantCulture)); break;
        }
    }
}
