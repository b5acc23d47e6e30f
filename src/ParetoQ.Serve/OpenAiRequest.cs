using System.Text.Json;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Serve;

/// <summary>A request the server refuses: its HTTP status and an OpenAI-style error object.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null,
    string type = "invalid_request_error") : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;
}

/// <summary>
/// The fields of /v1/completions and /v1/chat/completions that the server honours, read strictly from the request
/// JSON: a field of the wrong type or out of range is a 400 naming it. Fields the server does not use (penalties,
/// user, logit_bias, …) are ignored, as other OpenAI-compatible servers do.
/// </summary>
public sealed record OpenAiRequest
{
    public required string Model { get; init; }
    /// <summary>The completion prompt, or null for a chat request.</summary>
    public string? Prompt { get; init; }
    /// <summary>The conversation of a chat request, or null for a completion.</summary>
    public IReadOnlyList<ChatTemplate.Message>? Messages { get; init; }
    /// <summary>Null: until EOS, a stop string or the end of the context.</summary>
    public int? MaxTokens { get; init; }
    public float Temperature { get; init; } = 1f;
    public float TopP { get; init; } = 1f;
    public ulong? Seed { get; init; }
    public IReadOnlyList<string> Stop { get; init; } = [];
    public bool Stream { get; init; }
    public bool IncludeUsage { get; init; }

    public const int MaxStopStrings = 4;
    /// <summary>Nesting deeper than this is refused (requests nest a few levels).</summary>
    public const int MaxDepth = 64;

    /// <summary>
    /// Parses a request body strictly: a syntax error, or a string or field name that is not text (invalid UTF-8, an
    /// unpaired surrogate escape such as <c>"\ud800"</c>), is a 400 that names where it is, here rather than as an
    /// exception wherever the string is read later.
    /// </summary>
    public static JsonDocument ParseJson(byte[] body)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = MaxDepth });
        }
        catch (JsonException e)
        {
            throw new ApiException(400, $"the body is not valid JSON: {e.Message}");
        }
        if (StrictJson.FindUndecodable(document.RootElement) is { } at)
        {
            document.Dispose();
            string field = at.Length == 0 ? "the body" : $"'{at}'";
            throw new ApiException(400, $"{field} is not valid text: invalid UTF-8 or an unpaired surrogate " +
                $"escape (such as \\ud800)", at.Length == 0 ? null : at);
        }
        return document;
    }

    public static OpenAiRequest Parse(JsonElement root, bool chat)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new ApiException(400, "the request body must be a JSON object");
        string model = root.TryGetProperty("model", out var m) && m.ValueKind == JsonValueKind.String
            ? m.GetString()! : throw Invalid("model", "is required and must be a string");
        int n = OptionalInt(root, "n") ?? 1;
        if (n != 1) throw Invalid("n", $"is {n}; this server returns one choice per request (n = 1)");
        int? maxTokens = OptionalInt(root, chat ? "max_completion_tokens" : "max_tokens")
            ?? OptionalInt(root, "max_tokens");
        if (maxTokens is < 1) throw Invalid("max_tokens", $"is {maxTokens}; it must be at least 1");
        float temperature = OptionalFloat(root, "temperature") ?? 1f;
        if (!(temperature >= 0 && temperature <= 2))
            throw Invalid("temperature", $"is {temperature}; it must be in [0, 2]");
        float topP = OptionalFloat(root, "top_p") ?? 1f;
        if (!(topP > 0 && topP <= 1)) throw Invalid("top_p", $"is {topP}; it must be in (0, 1]");
        ulong? seed = root.TryGetProperty("seed", out var s) && s.ValueKind != JsonValueKind.Null
            ? s.ValueKind == JsonValueKind.Number && s.TryGetInt64(out long seedValue) ? (ulong)seedValue
                : throw Invalid("seed", "must be an integer")
            : null;
        bool stream = OptionalBool(root, "stream") ?? false;
        bool includeUsage = root.TryGetProperty("stream_options", out var so) && so.ValueKind == JsonValueKind.Object
            && (OptionalBool(so, "include_usage") ?? false);
        return new OpenAiRequest
        {
            Model = model,
            Prompt = chat ? null : ReadPrompt(root),
            Messages = chat ? ReadMessages(root) : null,
            MaxTokens = maxTokens,
            Temperature = temperature,
            TopP = topP,
            Seed = seed,
            Stop = ReadStop(root),
            Stream = stream,
            IncludeUsage = includeUsage,
        };
    }

    private static ApiException Invalid(string param, string problem) =>
        new(400, $"'{param}' {problem}", param);

    private static string ReadPrompt(JsonElement root)
    {
        if (!root.TryGetProperty("prompt", out var p)) throw Invalid("prompt", "is required");
        string? prompt = p.ValueKind switch
        {
            JsonValueKind.String => p.GetString(),
            JsonValueKind.Array when p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String
                => p[0].GetString(),
            _ => throw Invalid("prompt", "must be a string (or an array of one string)"),
        };
        if (string.IsNullOrEmpty(prompt)) throw Invalid("prompt", "is empty");
        return prompt;
    }

    private static List<ChatTemplate.Message> ReadMessages(JsonElement root)
    {
        if (!root.TryGetProperty("messages", out var list) || list.ValueKind != JsonValueKind.Array)
            throw Invalid("messages", "is required and must be an array");
        if (list.GetArrayLength() == 0) throw Invalid("messages", "is empty");
        var messages = new List<ChatTemplate.Message>();
        int i = 0;
        foreach (var item in list.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (item.ValueKind != JsonValueKind.Object) throw Invalid(at, "must be an object");
            string role = item.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String
                ? r.GetString()! : throw Invalid($"{at}.role", "is required and must be a string");
            // "developer" is the newer name of "system".
            if (role == "developer") role = "system";
            if (role is not ("system" or "user" or "assistant"))
                throw Invalid($"{at}.role", $"is '{role}'; it must be system, developer, user or assistant");
            messages.Add(new(role, ReadContent(item, at)));
        }
        return messages;
    }

    // A string, or an array of text parts.
    private static string ReadContent(JsonElement message, string at)
    {
        if (!message.TryGetProperty("content", out var c)) throw Invalid($"{at}.content", "is required");
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array) throw Invalid($"{at}.content", "must be a string or an array of parts");
        var text = new System.Text.StringBuilder();
        foreach (var part in c.EnumerateArray())
        {
            bool isText = part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var t)
                && t.ValueEquals("text") && part.TryGetProperty("text", out var pt)
                && pt.ValueKind == JsonValueKind.String;
            if (!isText) throw Invalid($"{at}.content", "has a part that is not text; this model reads text only");
            text.Append(part.GetProperty("text").GetString());
        }
        return text.ToString();
    }

    private static List<string> ReadStop(JsonElement root)
    {
        if (!root.TryGetProperty("stop", out var s) || s.ValueKind == JsonValueKind.Null) return [];
        if (s.ValueKind == JsonValueKind.String) return s.GetString()!.Length == 0 ? [] : [s.GetString()!];
        if (s.ValueKind != JsonValueKind.Array) throw Invalid("stop", "must be a string or an array of strings");
        if (s.GetArrayLength() > MaxStopStrings) throw Invalid("stop", $"has more than {MaxStopStrings} strings");
        var stops = new List<string>();
        foreach (var item in s.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
                throw Invalid("stop", "must be a string or an array of strings");
            if (item.GetString()!.Length > 0) stops.Add(item.GetString()!);
        }
        return stops;
    }

    private static int? OptionalInt(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long value))
            throw Invalid(name, "must be an integer");
        return (int)Math.Clamp(value, int.MinValue, int.MaxValue);
    }

    private static float? OptionalFloat(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.Number ? (float)v.GetDouble() : throw Invalid(name, "must be a number");
    }

    private static bool? OptionalBool(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean()
            : throw Invalid(name, "must be true or false");
    }
}
