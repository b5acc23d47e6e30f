using ParetoQ.Runtime.Format;

namespace ParetoQ.Runtime.Text;

/// <summary>The chat layouts the engine writes (<see cref="ChatTemplate"/>).</summary>
public enum ChatFormat { Plain, Llama2, Mistral, Llama3, Llama4, ChatML }

/// <summary>
/// A model's chat format, as token ids. The family is detected from the chat template the converter stored (Hugging
/// Face <c>chat_template</c> or GGUF <c>tokenizer.chat_template</c>), else from the tokenizer's special tokens, else
/// it is <see cref="ChatFormat.Plain"/>, the documented template for base models. Special tokens come only from the
/// template: the messages' text is encoded as plain text, so a user cannot inject them. The CLI, the server and
/// IChatClient all encode through here.
/// </summary>
public sealed class ChatTemplate
{
    public sealed record Message(string Role, string Content);

    private readonly ITokenizer _tokenizer;
    private readonly IReadOnlyDictionary<string, int> _specials;
    private readonly int _bos;
    private readonly int _eos;

    public ChatFormat Format { get; }

    private ChatTemplate(ChatFormat format, ITokenizer tokenizer, IReadOnlyDictionary<string, int> specials, int bos,
        int eos) => (Format, _tokenizer, _specials, _bos, _eos) = (format, tokenizer, specials, bos, eos);

    /// <summary>The template of a model file's tokenizer.</summary>
    public static ChatTemplate For(ITokenizer tokenizer, PqTokenizerInfo info) =>
        new(Detect(info.ChatTemplate, info.SpecialTokens, info.BosId >= 0), tokenizer, info.SpecialTokens,
            info.BosId, info.EosIds.Count > 0 ? info.EosIds[0] : -1);

    /// <summary>
    /// The family of a Jinja chat template, by the markers each family's template writes; without a template, by the
    /// special tokens that only one family defines.
    /// </summary>
    public static ChatFormat Detect(string? template, IReadOnlyDictionary<string, int> specials, bool hasBos)
    {
        bool Has(string token) => specials.ContainsKey(token);
        if (template is not null)
        {
            if (template.Contains("<|header_start|>") && Has("<|header_start|>")) return ChatFormat.Llama4;
            if (template.Contains("<|start_header_id|>") && Has("<|start_header_id|>")) return ChatFormat.Llama3;
            if (template.Contains("<|im_start|>") && Has("<|im_start|>")) return ChatFormat.ChatML;
            if (template.Contains("[INST]") && hasBos)
                return template.Contains("<<SYS>>") ? ChatFormat.Llama2 : ChatFormat.Mistral;
        }
        if (Has("<|header_start|>") && Has("<|header_end|>") && Has("<|eot|>")) return ChatFormat.Llama4;
        if (Has("<|start_header_id|>") && Has("<|end_header_id|>") && Has("<|eot_id|>")) return ChatFormat.Llama3;
        if (Has("<|im_start|>") && Has("<|im_end|>")) return ChatFormat.ChatML;
        return ChatFormat.Plain;
    }

    /// <summary>Text that ends a reply: a plain-template model that starts the next turn itself.</summary>
    public IReadOnlyList<string> StopStrings => Format == ChatFormat.Plain ? ["\nUser:", "\nSystem:"] : [];

    /// <summary>Tokens that end a reply besides the model's EOS ids (the end-of-turn token of the header
    /// formats).</summary>
    public IReadOnlyList<int> EndOfTurnIds => Format switch
    {
        ChatFormat.Llama4 => [_specials["<|eot|>"]],
        ChatFormat.Llama3 => [_specials["<|eot_id|>"]],
        ChatFormat.ChatML => [_specials["<|im_end|>"]],
        _ => [],
    };

    /// <summary>
    /// Ids that close a finished reply in the session, so that <see cref="Encode"/> with
    /// <c>continuation: true</c> can follow; null where the conversation must be encoded again from the start (the
    /// plain template: its reply ends at a stop string whose tokens are already in the session).
    /// </summary>
    public int[]? CloseReply => Format switch
    {
        ChatFormat.Plain => null,
        ChatFormat.Llama2 or ChatFormat.Mistral => _eos >= 0 ? [_eos] : null,
        ChatFormat.ChatML => [.. EndOfTurnIds, .. _tokenizer.Encode("\n", addBos: false)],
        _ => [.. EndOfTurnIds],
    };

    /// <summary>
    /// The conversation as prompt ids, ending where the assistant's reply begins. With
    /// <paramref name="continuation"/>, the messages follow a reply closed with <see cref="CloseReply"/> in the same
    /// session: no BOS, and no system message.
    /// </summary>
    public int[] Encode(IReadOnlyList<Message> messages, bool continuation = false)
    {
        if (messages.Count == 0) throw new ArgumentException("there are no messages", nameof(messages));
        foreach (var m in messages)
            if (m.Role is not ("system" or "user" or "assistant"))
                throw new ArgumentException($"unknown chat role '{m.Role}'", nameof(messages));
        var ids = new List<int>();
        void Text(string text) => ids.AddRange(_tokenizer.Encode(text, addBos: false));
        void Special(string token) => ids.Add(_specials[token]);
        switch (Format)
        {
            case ChatFormat.Llama4:
            case ChatFormat.Llama3:
                bool four = Format == ChatFormat.Llama4;
                if (!continuation) Special("<|begin_of_text|>");
                void Header(string role)
                {
                    Special(four ? "<|header_start|>" : "<|start_header_id|>");
                    Text(role);
                    Special(four ? "<|header_end|>" : "<|end_header_id|>");
                    Text("\n\n");
                }
                foreach (var m in messages)
                {
                    Header(m.Role);
                    Text(m.Content);
                    Special(four ? "<|eot|>" : "<|eot_id|>");
                }
                Header("assistant");
                break;
            case ChatFormat.ChatML:
                foreach (var m in messages)
                {
                    Special("<|im_start|>");
                    Text($"{m.Role}\n{m.Content}");
                    Special("<|im_end|>");
                    Text("\n");
                }
                Special("<|im_start|>");
                Text("assistant\n");
                break;
            case ChatFormat.Llama2:
            case ChatFormat.Mistral:
                EncodeInst(messages, ids, Text, continuation);
                break;
            default:
                // One text, encoded whole: there are no special tokens to split it at.
                if (!continuation && _bos >= 0) ids.Add(_bos);
                Text(string.Concat(messages.Select(m => $"{Label(m.Role)}: {m.Content}\n")) + "Assistant:");
                break;
        }
        return [.. ids];
    }

    // [INST] formats. Llama-2: each user turn is BOS "[INST] … [/INST]", the system message inside <<SYS>> markers
    // at the start of the first user message, and a reply " … " then EOS. Mistral: one BOS, "[INST] … [/INST]", the
    // system message before the first user message, and a reply followed directly by EOS.
    private void EncodeInst(IReadOnlyList<Message> messages, List<int> ids, Action<string> text, bool continuation)
    {
        bool llama2 = Format == ChatFormat.Llama2;
        if (!llama2 && !continuation && _bos >= 0) ids.Add(_bos);
        string? system = null;
        foreach (var m in messages)
        {
            if (m.Role == "system")
            {
                system = system is null ? m.Content : system + "\n" + m.Content;
                continue;
            }
            if (m.Role == "assistant")
            {
                text(llama2 ? $" {m.Content} " : m.Content);
                if (_eos >= 0) ids.Add(_eos);
                continue;
            }
            if (llama2 && _bos >= 0) ids.Add(_bos);
            string user = system is null ? m.Content
                : llama2 ? $"<<SYS>>\n{system}\n<</SYS>>\n\n{m.Content}" : $"{system}\n\n{m.Content}";
            system = null;
            text($"[INST] {user} [/INST]");
        }
    }

    private static string Label(string role) => role switch
    {
        "system" => "System",
        "user" => "User",
        _ => "Assistant",
    };
}
