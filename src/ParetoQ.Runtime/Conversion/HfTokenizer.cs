using System.Text;
using System.Text.Json;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Runtime.Conversion;

/// <summary>
/// The tokenizer of a Hugging Face checkpoint directory, ready to embed in a .pq: <c>tokenizer.model</c> (SentencePiece
/// protobuf, or a tiktoken ranks file as Llama-3/4 ship it), else <c>tokenizer.json</c>; special tokens and the chat
/// template from <c>tokenizer_config.json</c> (or <c>chat_template.jinja</c>), cross-checked with config.json's ids and
/// <c>special_tokens_map.json</c>. It is built once here with the runtime's own loader, so a file the runtime could not
/// read is refused at conversion time.
/// </summary>
public sealed record HfTokenizer(PqTokenizerInfo Info, byte[] Bytes, string Description, IReadOnlyList<string> Notes)
{
    private const long MaxTokenizerBytes = 64 << 20;

    // tokenizer_config.json fields that only concern Python-side behaviour (padding, cleanup, class names).
    private static readonly HashSet<string> ConfigFieldsWithoutEffect = new(StringComparer.Ordinal)
    {
        "tokenizer_class", "model_max_length", "clean_up_tokenization_spaces", "padding_side", "truncation_side",
        "sp_model_kwargs", "spaces_between_special_tokens", "use_default_system_prompt", "model_input_names",
        "unk_token", "pad_token", "bos_token", "eos_token", "extra_special_tokens", "legacy", "add_prefix_space",
    };

    public static HfTokenizer Read(string directory, HfConfig config)
    {
        var notes = new List<string>();
        string model = Path.Combine(directory, "tokenizer.model"), json = Path.Combine(directory, "tokenizer.json");
        string file = File.Exists(model) ? model
            : File.Exists(json) ? json
            : throw new TokenizerException(directory,
                "no tokenizer.model or tokenizer.json in the checkpoint directory");
        byte[] bytes = ReadBounded(file, MaxTokenizerBytes);
        string kind = file == json ? TokenizerKinds.HuggingFaceJson : LooksLikeTiktoken(bytes) ? TokenizerKinds.Tiktoken
            : TokenizerKinds.SentencePiece;

        var tokConfig = ReadJsonIfPresent(Path.Combine(directory, "tokenizer_config.json"));
        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        string? template = null;
        if (tokConfig is { } tc)
        {
            var root = tc.RootElement;
            string source = Path.Combine(directory, "tokenizer_config.json");
            if (root.ValueKind != JsonValueKind.Object) throw new TokenizerException(source, "must be a JSON object");
            foreach (var p in root.EnumerateObject())
            {
                switch (p.Name)
                {
                    case "add_bos_token" when p.Value.ValueKind == JsonValueKind.False:
                        throw new TokenizerException(source,
                            "add_bos_token false is not implemented (the runtime always starts a prompt with BOS)");
                    case "add_eos_token" when p.Value.ValueKind == JsonValueKind.True:
                        throw new TokenizerException(source,
                            "add_eos_token true is not implemented (the runtime never appends EOS to a prompt)");
                    case "add_bos_token" or "add_eos_token":
                        break;
                    case "chat_template":
                        template = ChatTemplateText(p.Value, source);
                        break;
                    case "added_tokens_decoder":
                        ReadAddedTokens(p.Value, specials, source);
                        break;
                    default:
                        if (!ConfigFieldsWithoutEffect.Contains(p.Name)) notes.Add($"tokenizer_config.json: field '{p.Name}' ignored");
                        break;
                }
            }
        }
        string jinja = Path.Combine(directory, "chat_template.jinja");
        if (template is null && File.Exists(jinja)) template = Encoding.UTF8.GetString(ReadBounded(jinja, 1 << 20));

        int? bos = config.BosTokenId;
        if (config.EosTokenIds.Count == 0) throw new TokenizerException(Path.Combine(directory, HfConfig.FileName),
            "has no eos_token_id, so generation could never stop");
        // SentencePiece vocabularies hold their control pieces themselves
        if (kind != TokenizerKinds.Tiktoken) specials.Clear();
        var info = new PqTokenizerInfo(kind, bos ?? PqTokenizerInfo.None, config.EosTokenIds.ToArray(),
            config.PadTokenId ?? PqTokenizerInfo.None, specials, template);

        var tokenizer = Tokenizers.Create(info, bytes, config.Config.VocabSize, file);
        if (bos is null) info = info with { BosId = tokenizer.BosId };
        else if (kind != TokenizerKinds.Tiktoken && tokenizer.BosId != bos)
            throw new TokenizerException(file,
                $"its BOS id is {tokenizer.BosId} but config.json says bos_token_id {bos}");
        CheckSpecialTokensMap(directory, info);
        string description = $"{kind} from {Path.GetFileName(file)}, {tokenizer.VocabSize} ids, BOS {info.BosId}, EOS [{string.Join(", ", info.EosIds)}]" +
                             (template is null ? "" : ", chat template") + (specials.Count > 0
                                 ? $", {specials.Count} special tokens" : "");
        return new HfTokenizer(info, bytes, description, notes);
    }

    // A tiktoken file is lines of "base64 rank"; a SentencePiece model is a protobuf starting with field 1 (0x0A).
    private static bool LooksLikeTiktoken(byte[] bytes)
    {
        int end = Array.IndexOf(bytes, (byte)'\n', 0, Math.Min(bytes.Length, 4096));
        if (end <= 0) return false;
        string line = Encoding.ASCII.GetString(bytes, 0, end).TrimEnd('\r');
        int space = line.IndexOf(' ');
        return space > 0 && line[(space + 1)..].All(char.IsAsciiDigit)
            && line[..space].All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '+' or '/' or '=');
    }

    private static string ChatTemplateText(JsonElement value, string source)
    {
        if (value.ValueKind == JsonValueKind.String) return value.GetString()!;
        // The list form: [{"name": "default", "template": "..."}, ...].
        if (value.ValueKind == JsonValueKind.Array)
            foreach (var t in value.EnumerateArray())
                if (t.ValueKind == JsonValueKind.Object && t.TryGetProperty("name", out var n)
                    && n.ValueKind == JsonValueKind.String && n.GetString() == "default"
                    && t.TryGetProperty("template", out var tpl) && tpl.ValueKind == JsonValueKind.String)
                    return tpl.GetString()!;
        throw new TokenizerException(source, "chat_template must be a string or a list holding a 'default' template");
    }

    private static void ReadAddedTokens(JsonElement value, Dictionary<string, int> specials, string source)
    {
        if (value.ValueKind != JsonValueKind.Object) throw new TokenizerException(source,
            "added_tokens_decoder must be an object");
        foreach (var p in value.EnumerateObject())
        {
            if (!int.TryParse(p.Name, System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out int id))
                throw new TokenizerException(source, $"added_tokens_decoder key '{p.Name}' is not a token id");
            if (p.Value.ValueKind != JsonValueKind.Object || !p.Value.TryGetProperty("content", out var content)
                || content.ValueKind != JsonValueKind.String)
                throw new TokenizerException(source, $"added_tokens_decoder.{p.Name} has no content string");
            if (!specials.TryAdd(content.GetString()!, id)) throw new TokenizerException(source,
                $"added token '{content.GetString()}' appears twice");
        }
    }

    // special_tokens_map.json names the BOS/EOS strings; where they are known special tokens (tiktoken), the ids must
    // agree. SentencePiece BOS was already checked against the vocabulary's own control piece.
    private static void CheckSpecialTokensMap(string directory, PqTokenizerInfo info)
    {
        string path = Path.Combine(directory, "special_tokens_map.json");
        using var doc = ReadJsonIfPresent(path);
        if (doc is null) return;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new TokenizerException(path,
            "must be a JSON object");
        foreach (var (field, ids) in new[] { ("bos_token", new[] { info.BosId }),
            ("eos_token", info.EosIds.ToArray()) })
        {
            if (!doc.RootElement.TryGetProperty(field, out var v)) continue;
            string? content = v.ValueKind == JsonValueKind.String ? v.GetString()
                : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c)
                    && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
            if (content is null) throw new TokenizerException(path,
                $"{field} must be a string or an object with content");
            if (info.SpecialTokens.TryGetValue(content, out int id) && !ids.Contains(id))
                throw new TokenizerException(path,
                    $"{field} '{content}' is id {id}, but config.json gives [{string.Join(", ", ids)}]");
        }
    }

    private static JsonDocument? ReadJsonIfPresent(string path)
    {
        if (!File.Exists(path)) return null;
        return StrictJson.Parse(ReadBounded(path, 16 << 20), 64, Path.GetFileName(path), msg
            => new TokenizerException(path, msg));
    }

    private static byte[] ReadBounded(string path, long limit) =>
        InputFile.ReadAll(path, limit, problem => new TokenizerException(path, problem));
}
