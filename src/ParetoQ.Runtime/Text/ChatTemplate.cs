namespace ParetoQ.Runtime.Text;

/// <summary>How a conversation is laid out as tokens (<see cref="ChatTemplate"/>).</summary>
public enum ChatFormat { Plain, Llama4 }

/// <summary>
/// The Llama-4 chat format used by MobileLLM-Pro instruct models:
/// <c>&lt;|begin_of_text|&gt;[&lt;|header_start|&gt;system&lt;|header_end|&gt;\n\n{system}&lt;|eot|&gt;]&lt;|header_start|&gt;user&lt;|header_end|&gt;\n\n{text}&lt;|eot|&gt;&lt;|header_start|&gt;assistant&lt;|header_end|&gt;\n\n</c>.
/// Special tokens come only from the template; the user's text is encoded as plain text.
/// </summary>
public static class ChatTemplate
{
    public sealed record Message(string Role, string Content);

    /// <summary>The chat format a model's tokenizer supports: Llama-4 headers where it has them, else <see
    /// cref="Plain"/>.</summary>
    public static ChatFormat FormatOf(ITokenizer tokenizer) =>
        tokenizer is TiktokenTextTokenizer t && t.SpecialTokens.ContainsKey("<|header_start|>")
            ? ChatFormat.Llama4 : ChatFormat.Plain;

    /// <summary>Stop strings a reply in <paramref name="format"/> ends at: a plain-template model that starts the next
    /// turn itself.</summary>
    public static IReadOnlyList<string> StopStrings(ChatFormat format) =>
        format == ChatFormat.Plain ? ["\nUser:", "\nSystem:"] : [];

    /// <summary>A whole conversation as prompt ids, ending where the assistant's reply begins.</summary>
    public static int[] Encode(ITokenizer tokenizer, IReadOnlyList<Message> messages) =>
        FormatOf(tokenizer) == ChatFormat.Llama4 ? Llama4((TiktokenTextTokenizer)tokenizer, messages)
            : Plain(tokenizer, messages);

    /// <summary>
    /// The documented template for base models, which have no chat tokens: BOS, then each message as a line
    /// "System: …", "User: …" or "Assistant: …", then "Assistant:" for the reply. A base model continues text, so
    /// this makes a conversation readable to it but does not make it follow instructions.
    /// </summary>
    public static int[] Plain(ITokenizer tokenizer, IReadOnlyList<Message> messages)
    {
        var text = new System.Text.StringBuilder();
        foreach (var m in messages)
        {
            string label = m.Role switch
            {
                "system" => "System",
                "user" => "User",
                "assistant" => "Assistant",
                _ => throw new ArgumentException($"unknown chat role '{m.Role}'", nameof(messages)),
            };
            text.Append(label).Append(": ").Append(m.Content).Append('\n');
        }
        text.Append("Assistant:");
        return tokenizer.Encode(text.ToString(), addBos: true);
    }

    /// <param name="continuation">The messages continue a conversation already in the session: no
    /// &lt;|begin_of_text|&gt;.</param>
    public static int[] Llama4(TiktokenTextTokenizer tokenizer, IReadOnlyList<Message> messages,
        bool addAssistantHeader = true, bool continuation = false)
    {
        int begin = tokenizer.Special("<|begin_of_text|>"), headerStart = tokenizer.Special("<|header_start|>");
        int headerEnd = tokenizer.Special("<|header_end|>"), eot = tokenizer.Special("<|eot|>");
        var ids = new List<int>();
        if (!continuation) ids.Add(begin);
        void Header(string role)
        {
            ids.Add(headerStart);
            ids.AddRange(tokenizer.Encode(role, addBos: false));
            ids.Add(headerEnd);
            ids.AddRange(tokenizer.Encode("\n\n", addBos: false));
        }
        foreach (var m in messages)
        {
            if (m.Role is not ("system" or "user"
                or "assistant")) throw new ArgumentException($"unknown chat role '{m.Role}'", nameof(messages));
            Header(m.Role);
            ids.AddRange(tokenizer.Encode(m.Content, addBos: false));
            ids.Add(eot);
        }
        if (addAssistantHeader) Header("assistant");
        return [.. ids];
    }
}
