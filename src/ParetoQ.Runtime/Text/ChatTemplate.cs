namespace ParetoQ.Runtime.Text;

/// <summary>
/// The Llama-4 chat format used by MobileLLM-Pro instruct models:
/// <c>&lt;|begin_of_text|&gt;[&lt;|header_start|&gt;system&lt;|header_end|&gt;\n\n{system}&lt;|eot|&gt;]&lt;|header_start|&gt;user&lt;|header_end|&gt;\n\n{text}&lt;|eot|&gt;&lt;|header_start|&gt;assistant&lt;|header_end|&gt;\n\n</c>.
/// Special tokens come only from the template; the user's text is encoded as plain text.
/// </summary>
public static class ChatTemplate
{
    public sealed record Message(string Role, string Content);

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
