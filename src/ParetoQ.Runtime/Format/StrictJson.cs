using System.Text.Json;

namespace ParetoQ.Runtime.Format;

/// <summary>
/// Reads one JSON object strictly: each field is fetched by name with its expected kind and range, and
/// <see cref="RejectUnknown"/> refuses any field nobody asked for. Errors go through the caller's exception factory,
/// so each domain (format, config) keeps its own exception type.
/// </summary>
public sealed class StrictJson
{
    private readonly JsonElement _obj;
    private readonly string _path;
    private readonly Func<string, Exception> _error;
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);

    /// <summary>
    /// Parses UTF-8 JSON from an untrusted file. The encoding is checked whole first: the parser checks it only when a
    /// string is read, so a bad byte would otherwise surface later as an exception outside the caller's domain.
    /// </summary>
    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8, int maxDepth, string what, Func<string,
        Exception> error)
    {
        if (!System.Text.Unicode.Utf8.IsValid(utf8.Span)) throw error($"{what} is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = maxDepth });
        }
        catch (JsonException e)
        {
            throw error($"{what} is not valid JSON: {e.Message}");
        }
        try
        {
            CheckStrings(doc.RootElement, what, error);
            return doc;
        }
        catch
        {
            doc.Dispose();
            throw;
        }
    }

    // Every name and string is decoded once here, so none can fail later outside the caller's domain.
    private static void CheckStrings(JsonElement e, string what, Func<string, Exception> error)
    {
        if (FindUndecodable(e) is { } at)
            throw error($"{what} holds a string that is not text at {(at.Length == 0 ? "the top" : at)} " +
                $"(invalid UTF-8 or an unpaired UTF-16 surrogate escape such as \\ud800)");
    }

    /// <summary>
    /// The path (<c>messages[0].content</c>; a name's own path for a bad field name) of the first string or field name
    /// that does not decode to text, or null when all do. A <c>"\ud800"</c> escape is valid JSON syntax and valid
    /// UTF-8, but no string, and the parser checks UTF-8 only when a string is read: either way reading it throws
    /// InvalidOperationException wherever that happens.
    /// </summary>
    public static string? FindUndecodable(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                {
                    string name;
                    try { name = p.Name; }
                    catch (InvalidOperationException) { return "(a field name)"; }
                    if (FindUndecodable(p.Value) is { } inner)
                        return inner.Length == 0 ? name : inner[0] == '[' ? name + inner : name + "." + inner;
                }
                return null;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in e.EnumerateArray())
                {
                    if (FindUndecodable(item) is { } inner)
                        return $"[{i}]" + (inner.Length == 0 || inner[0] == '[' ? inner : "." + inner);
                    i++;
                }
                return null;
            case JsonValueKind.String:
                try { _ = e.GetString(); }
                catch (InvalidOperationException) { return ""; }
                return null;
            default:
                return null;
        }
    }

    public StrictJson(JsonElement obj, string path, Func<string, Exception> error)
    {
        _obj = obj;
        _path = path;
        _error = error;
        if (obj.ValueKind != JsonValueKind.Object)
            throw error($"{(path.Length == 0 ? "the top level" : $"'{path}'")} must be a JSON object, not {obj.ValueKind.ToString().ToLowerInvariant()}");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in obj.EnumerateObject())
            if (!names.Add(p.Name)) throw error($"field '{Field(p.Name)}' appears twice");
    }

    public string Field(string name) => _path.Length == 0 ? name : $"{_path}.{name}";

    public bool Has(string name) => _obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

    public JsonElement Get(string name, JsonValueKind kind)
    {
        _seen.Add(name);
        if (!_obj.TryGetProperty(name, out var v)) throw _error($"field '{Field(name)}' is missing");
        if (v.ValueKind != kind && !(kind == JsonValueKind.True && v.ValueKind == JsonValueKind.False))
            throw _error($"field '{Field(name)}' must be {KindName(kind)}, not {v.ValueKind.ToString().ToLowerInvariant()}");
        return v;
    }

    public JsonElement? GetOptional(string name, JsonValueKind kind) => Present(name) ? Get(name, kind) : null;

    public StrictJson Object(string name) => new(Get(name, JsonValueKind.Object), Field(name), _error);

    public StrictJson? OptionalObject(string name) => GetOptional(name, JsonValueKind.Object) is { } v
        ? new StrictJson(v, Field(name), _error) : null;

    public string String(string name, int maxLength = 4096)
    {
        string s = Get(name, JsonValueKind.String).GetString()!;
        if (s.Length > maxLength)
            throw _error($"field '{Field(name)}' is {s.Length} characters, more than {maxLength}");
        return s;
    }

    public string? OptionalString(string name, int maxLength = 1 << 20) => Present(name) ? String(name, maxLength)
        : null;

    public bool Bool(string name) => Get(name, JsonValueKind.True).GetBoolean();

    public bool OptionalBool(string name, bool fallback) => Present(name) ? Bool(name) : fallback;

    public long Int64(string name, long min, long max)
        => CheckedInt(Get(name, JsonValueKind.Number), Field(name), min, max);

    public int Int(string name, int min, int max) => (int)Int64(name, min, max);

    public int OptionalInt(string name, int min, int max, int fallback) => Present(name) ? Int(name, min, max)
        : fallback;

    public double Double(string name, double min, double max)
    {
        var v = Get(name, JsonValueKind.Number);
        if (!v.TryGetDouble(out double d) || !double.IsFinite(d) || d < min || d > max)
            throw _error($"field '{Field(name)}' = {v.GetRawText()} is outside [{min}, {max}]");
        return d;
    }

    public double OptionalDouble(string name, double min, double max, double fallback) => Present(name)
        ? Double(name, min, max) : fallback;

    /// <summary>An array of at most <paramref name="maxLength"/> elements.</summary>
    public JsonElement Array(string name, int maxLength)
    {
        var v = Get(name, JsonValueKind.Array);
        int n = v.GetArrayLength();
        if (n > maxLength) throw _error($"field '{Field(name)}' has {n} elements, more than {maxLength}");
        return v;
    }

    public int[] IntArray(string name, int maxLength, int min, int max)
    {
        var v = Array(name, maxLength);
        var result = new int[v.GetArrayLength()];
        int i = 0;
        foreach (var e in v.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number) throw _error($"field '{Field(name)}[{i}]' must be a number");
            result[i] = (int)CheckedInt(e, $"{Field(name)}[{i}]", min, max);
            i++;
        }
        return result;
    }

    /// <summary>Marks fields as read on purpose without using them (informational fields of foreign files).</summary>
    public void Ignore(params string[] names)
    {
        foreach (string n in names) _seen.Add(n);
    }

    /// <summary>Refuses fields that no reader asked for: a field this build does not implement must not be silently
    /// ignored.</summary>
    public void RejectUnknown()
    {
        foreach (var p in _obj.EnumerateObject())
            if (!_seen.Contains(p.Name))
                throw _error($"unknown field '{Field(p.Name)}' (not supported by this version of ParetoQ.Runtime)");
    }

    private long CheckedInt(JsonElement v, string field, long min, long max)
    {
        if (!v.TryGetInt64(out long x) || x < min || x > max)
            throw _error($"field '{field}' = {Truncate(v.GetRawText())} must be an integer in [{min}, {max}]");
        return x;
    }

    // For optional fields: marks the name as known (so RejectUnknown accepts it) and says whether a non-null value is
    // there.
    public bool Present(string name)
    {
        _seen.Add(name);
        return Has(name);
    }

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";

    private static string KindName(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => kind.ToString(),
    };
}
