using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using ParetoQ.Runtime.Format;

namespace ParetoQ.Trainer;

/// <summary>
/// Training documents from text files. A <c>.jsonl</c> file holds one JSON object per line whose string field
/// <c>"text"</c> is one document, line breaks included (the layout of TinyStories and most Hugging Face text datasets,
/// and what <c>paretoq-train sample</c> writes); any other file holds one document per line.
/// </summary>
public static class TrainingText
{
    /// <summary>The largest training text file read whole.</summary>
    public const long MaxFileBytes = 1L << 30;

    public static IEnumerable<string> Documents(string file)
    {
        string content;
        try
        {
            content = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(InputFile.ReadAll(file, MaxFileBytes,
                problem => new InvalidDataException($"{file}: {problem}")));
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"{file} is not valid UTF-8 (byte {e.Index})");
        }
        bool jsonLines = file.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase);
        string[] lines = content.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].TrimEnd('\r');
            if (!jsonLines) yield return line;
            else if (line.Trim().Length > 0) yield return JsonLineText(file, i + 1, line);
        }
    }

    /// <summary>One document as a JSON Lines record, <c>{"text":"..."}</c>, with non-ASCII text left
    /// readable.</summary>
    public static string JsonLine(string document)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer,
            new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            writer.WriteString("text", document);
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static string JsonLineText(string file, int lineNumber, string line)
    {
        try
        {
            using var json = JsonDocument.Parse(line);
            if (json.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{file}:{lineNumber}: expected a JSON object with a \"text\" string");
            if (!json.RootElement.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{file}:{lineNumber}: no \"text\" string in this JSON object");
            return text.GetString()!;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{file}:{lineNumber}: not JSON ({e.Message.Split('.')[0]})");
        }
        catch (InvalidOperationException e) // a lone surrogate escape has no UTF-16 string
        {
            throw new InvalidDataException(
                $"{file}:{lineNumber}: the \"text\" string is not valid Unicode ({e.Message})");
        }
    }
}
