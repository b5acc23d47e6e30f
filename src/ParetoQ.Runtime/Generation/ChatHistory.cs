using System.Text.Json;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Generation;

/// <summary>
/// A conversation that outlives its context: which messages a context holds (the oldest turns leave first, a leading
/// system message stays, as Ollama does), and the conversation as a file, <c>{"messages": [{"role", "content"}]}</c>
/// (the shape of an OpenAI chat request).
/// </summary>
public static class ChatHistory
{
    /// <summary>The largest conversation file read.</summary>
    public const int MaxFileBytes = 16 << 20;

    private static readonly string[] Roles = ["system", "user", "assistant"];

    /// <summary>
    /// The prompt of <paramref name="messages"/> in <paramref name="template"/>, after dropping the oldest messages
    /// (whole turns: the kept part never starts with a reply) until it fits <paramref name="budget"/> tokens. A leading
    /// system message and the last message always stay. Returns the prompt and how many messages were dropped from
    /// the list. The cut is found by bisection, so a long history costs a few encodings, not one per message.
    /// </summary>
    /// <exception cref="ContextLengthExceededException">The kept messages alone need more than the budget.</exception>
    public static (int[] Ids, int Dropped) Fit(ChatTemplate template, List<ChatTemplate.Message> messages, int budget)
    {
        int[] whole = template.Encode(messages);
        if (whole.Length <= budget) return (whole, 0);
        int first = messages.Count > 0 && messages[0].Role == "system" ? 1 : 0;
        // Drop messages [first, first + k): k from 1 up to all but the last; a kept part that would start with a
        // reply drops it too.
        int Cut(int k)
        {
            while (first + k < messages.Count - 1 && messages[first + k].Role == "assistant") k++;
            return k;
        }
        int[] Encode(int k) => template.Encode([.. messages.Take(first), .. messages.Skip(first + k)]);
        int low = 1, high = messages.Count - 1 - first; // the answer is in [low, high]
        int shortest = high < low ? whole.Length : Encode(Cut(high)).Length; // all but the kept messages dropped
        if (shortest > budget)
            throw new ContextLengthExceededException($"the last message needs {shortest} tokens in the template, " +
                $"more than the {budget} that the context leaves for it");
        while (low < high)
        {
            int mid = (low + high) / 2;
            if (Encode(Cut(mid)).Length <= budget) high = mid;
            else low = mid + 1;
        }
        int dropped = Cut(low);
        int[] ids = Encode(dropped);
        messages.RemoveRange(first, dropped);
        return (ids, dropped);
    }

    /// <summary>Writes the conversation to a new file; an existing file is never replaced.</summary>
    public static void Save(string path, IReadOnlyList<ChatTemplate.Message> messages) =>
        AtomicFile.Write(path, overwrite: false, stream =>
        {
            using var w = new Utf8JsonWriter(stream, new JsonWriterOptions
                { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
            w.WriteStartObject();
            w.WriteStartArray("messages");
            foreach (var m in messages)
            {
                w.WriteStartObject();
                w.WriteString("role", m.Role);
                w.WriteString("content", m.Content);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });

    /// <summary>Reads a conversation written by <see cref="Save"/> (or any file of that shape), strictly: unknown
    /// fields, unknown roles and text that is not UTF-8 are refused with the place named.</summary>
    /// <exception cref="InvalidDataException">The file is not such a conversation.</exception>
    public static List<ChatTemplate.Message> Load(string path)
    {
        var bytes = InputFile.ReadAll(path, MaxFileBytes, problem => new InvalidDataException($"{path} {problem}"));
        Exception Error(string problem) => new InvalidDataException($"{path}: {problem}");
        using var doc = StrictJson.Parse(bytes, 8, path, Error);
        var top = new StrictJson(doc.RootElement, "", Error);
        var list = top.Array("messages", 1 << 20);
        top.RejectUnknown();
        var messages = new List<ChatTemplate.Message>();
        int i = 0;
        foreach (var element in list.EnumerateArray())
        {
            var m = new StrictJson(element, $"messages[{i++}]", Error);
            string role = m.String("role", 16);
            if (!Roles.Contains(role))
                throw Error($"{m.Field("role")} is '{role}', not one of {string.Join(", ", Roles)}");
            messages.Add(new(role, m.String("content", MaxFileBytes)));
            m.RejectUnknown();
        }
        return messages;
    }
}
