using System.Text.Json;

namespace ParetoQ.Bench;

/// <summary>Rows of named values, printed as an aligned table or written as JSON (<c>--json</c>) for scripts.</summary>
public sealed class BenchReport(string mode)
{
    private readonly List<List<(string Key, object Value)>> _rows = [];
    private readonly List<(string Key, object Value)> _facts = [];

    /// <summary>Facts about the run (machine, threads, path) that apply to every row.</summary>
    public void Fact(string key, object value) => _facts.Add((key, value));

    public void Row(params (string Key, object Value)[] values) => _rows.Add([.. values]);

    public void Print(bool json, TextWriter output)
    {
        if (json)
        {
            using var stream = Console.OpenStandardOutput();
            using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            w.WriteStartObject();
            w.WriteString("mode", mode);
            foreach (var (k, v) in _facts) Write(w, k, v);
            w.WriteStartArray("results");
            foreach (var row in _rows)
            {
                w.WriteStartObject();
                foreach (var (k, v) in row) Write(w, k, v);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
            w.Flush();
            stream.WriteByte((byte)'\n');
            return;
        }
        foreach (var (k, v) in _facts) output.WriteLine($"{k}: {Text(v)}");
        if (_rows.Count == 0) return;
        var keys = _rows.SelectMany(r => r.Select(c => c.Key)).Distinct().ToList();
        var widths = keys.Select(k => Math.Max(k.Length, _rows.Max(r => Text(Find(r, k)).Length))).ToList();
        output.WriteLine(string.Join("  ", keys.Select((k, i) => k.PadLeft(widths[i]))));
        foreach (var row in _rows)
            output.WriteLine(string.Join("  ", keys.Select((k, i) => Text(Find(row, k)).PadLeft(widths[i]))));
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
        _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };

    private static void Write(Utf8JsonWriter w, string key, object v)
    {
        switch (v)
        {
            case double d: w.WriteNumber(key, Math.Round(d, 4)); break;
            case float f: w.WriteNumber(key, Math.Round(f, 4)); break;
            case int i: w.WriteNumber(key, i); break;
            case long l: w.WriteNumber(key, l); break;
            case bool b: w.WriteBoolean(key, b); break;
            default: w.WriteString(key, Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture)); break;
        }
    }
}
