using System.Text;
using System.Text.Json;
using ParetoQ.Runtime.Format;

namespace ParetoQ.Runtime.Model;

public enum RopeLayout
{
    /// <summary>LLaMA / MobileLLM: dimension i pairs with i + head_dim/2.</summary>
    RotateHalf,
    /// <summary>Llama-4 / MobileLLM-Pro: dimension 2i pairs with 2i + 1.</summary>
    Interleaved,
}

public enum AttentionKind
{
    /// <summary>Attends to every earlier position (<c>full_attention</c>).</summary>
    Global,
    /// <summary>Attends to the <see cref="ModelConfig.SlidingWindow"/> most recent positions, itself included
    /// (<c>sliding_attention</c>).</summary>
    Local,
}

/// <summary>Llama-3 style RoPE frequency scaling.</summary>
public sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor,
    int OriginalMaxPositionEmbeddings);

/// <summary>Llama-4 attention temperature tuning on NoPE layers: q *= log1p(floor((pos + 1) / FloorScale)) · AttnScale
/// + 1.</summary>
public sealed record AttentionTemperatureTuning(double FloorScale, double AttnScale)
{
    /// <summary>The factor q is multiplied by at <paramref name="position"/>.</summary>
    public float Factor(int position)
        => (float)(Math.Log(Math.Floor((position + 1.0) / FloorScale) + 1.0) * AttnScale + 1.0);
}

/// <summary>
/// The architecture of a model, read strictly from the "config" object of a .pq file (docs/FORMAT.md lists the fields).
/// Every architectural difference between MobileLLM and MobileLLM-Pro is a field here, never a fork of the forward
/// pass.
/// </summary>
public sealed class ModelConfig
{
    public static readonly string[] KnownArchitectures = ["mobilellm", "mobilellm-pro"];
    /// <summary>The largest vocabulary a config may declare (MobileLLM-Pro's is 202k).</summary>
    public const int MaxVocabSize = 1 << 24;
    /// <summary>The most layers a config may declare.</summary>
    public const int MaxLayers = 4096;

    public required string Architecture { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    /// <summary>Distinct weight layers in the file.</summary>
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public required float RmsNormEps { get; init; }
    public required double RopeTheta { get; init; }
    public required RopeLayout RopeLayout { get; init; }
    public Llama3RopeScaling? RopeScaling { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>MobileLLM layer sharing: each weight layer runs this many times in a row, each run with its own KV
    /// cache.</summary>
    public int LayerRepeat { get; init; } = 1;
    /// <summary>Per weight layer.</summary>
    public required AttentionKind[] LayerTypes { get; init; }
    /// <summary>Window of local layers, 0 when every layer is global.</summary>
    public int SlidingWindow { get; init; }
    /// <summary>Weightless L2 norm of q and k after RoPE, on RoPE layers only (Llama-4).</summary>
    public bool UseQkNorm { get; init; }
    /// <summary>Per weight layer: true = apply RoPE, false = NoPE.</summary>
    public required bool[] RopeLayers { get; init; }
    public AttentionTemperatureTuning? TemperatureTuning { get; init; }

    /// <summary>Layers the forward pass runs: <see cref="NumLayers"/> × <see cref="LayerRepeat"/>.</summary>
    public int EffectiveLayers => NumLayers * LayerRepeat;
    public int QueryDim => NumHeads * HeadDim;
    public int KvDim => NumKvHeads * HeadDim;

    public static ModelConfig Parse(JsonElement json, string source)
    {
        Func<string, Exception> error = msg => new ModelConfigException(source, msg);
        var c = new StrictJson(json, "", error);
        string arch = c.String("architecture", 64);
        if (!KnownArchitectures.Contains(arch)) throw error($"unknown architecture '{arch}' (supported: {string.Join(", ", KnownArchitectures)})");
        int layers = c.Int("num_hidden_layers", 1, MaxLayers);
        int heads = c.Int("num_attention_heads", 1, 4096);
        int kvHeads = c.Int("num_key_value_heads", 1, 4096);
        if (heads % kvHeads != 0) throw error($"num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}");
        int headDim = c.Int("head_dim", 2, 1024);
        if (headDim % 2 != 0) throw error($"head_dim {headDim} must be even for RoPE");

        string layoutName = c.String("rope_layout", 32);
        var layout = layoutName switch
        {
            "rotate_half" => RopeLayout.RotateHalf,
            "interleaved" => RopeLayout.Interleaved,
            _ => throw error($"rope_layout '{layoutName}' is not implemented (use rotate_half or interleaved)"),
        };

        Llama3RopeScaling? scaling = c.OptionalObject("rope_scaling") is { } rs
            ? ParseRopeScaling(rs, rs.String("rope_type", 32), error) : null;
        var types = ParseLayerTypes(c, layers, error);
        int window = c.OptionalInt("sliding_window", 1, int.MaxValue, 0);
        if (types.Contains(AttentionKind.Local)
            && window == 0) throw error("layer_types has sliding_attention layers but sliding_window is missing");

        var rope = Enumerable.Repeat(true, layers).ToArray();
        if (c.GetOptional("rope_layers", JsonValueKind.Array) is not null)
        {
            int[] flags = c.IntArray("rope_layers", layers, 0, 1);
            if (flags.Length != layers) throw error($"rope_layers has {flags.Length} entries for {layers} layers");
            rope = flags.Select(f => f == 1).ToArray();
        }

        AttentionTemperatureTuning? tuning = null;
        if (c.OptionalObject("attn_temperature_tuning") is { } tt)
        {
            tuning = new AttentionTemperatureTuning(tt.Double("floor_scale", 1, 1e12), tt.Double("attn_scale", 0, 1e3));
            tt.RejectUnknown();
        }

        var config = new ModelConfig
        {
            Architecture = arch,
            VocabSize = c.Int("vocab_size", 1, MaxVocabSize),
            HiddenSize = c.Int("hidden_size", 1, 1 << 16),
            IntermediateSize = c.Int("intermediate_size", 1, 1 << 18),
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            MaxPositionEmbeddings = c.Int("max_position_embeddings", 1, 1 << 24),
            RmsNormEps = (float)c.Double("rms_norm_eps", 1e-12, 1e-1),
            RopeTheta = c.Double("rope_theta", 1, 1e12),
            RopeLayout = layout,
            RopeScaling = scaling,
            TieWordEmbeddings = c.Bool("tie_word_embeddings"),
            LayerRepeat = c.OptionalInt("layer_repeat", 1, 16, 1),
            LayerTypes = types,
            SlidingWindow = window,
            UseQkNorm = c.OptionalBool("use_qk_norm", false),
            RopeLayers = rope,
            TemperatureTuning = tuning,
        };
        c.RejectUnknown();
        return config;
    }

    /// <summary>
    /// The <c>rope_scaling</c> object, whose type the caller has read (its field name differs between schemas):
    /// <c>default</c> (none) or <c>llama3</c>. Shared with the Hugging Face config mapping, which uses the same fields.
    /// </summary>
    internal static Llama3RopeScaling? ParseRopeScaling(StrictJson rs, string type, Func<string, Exception> error)
    {
        Llama3RopeScaling? scaling = null;
        if (type == "llama3")
        {
            scaling = new Llama3RopeScaling(
                rs.Double("factor", 1, 1e6), rs.Double("low_freq_factor", 1e-6, 1e6),
                    rs.Double("high_freq_factor", 1e-6, 1e6),
                rs.Int("original_max_position_embeddings", 1, int.MaxValue));
            if (scaling.HighFreqFactor <= scaling.LowFreqFactor) throw error("rope_scaling.high_freq_factor must exceed low_freq_factor");
        }
        else if (type != "default")
        {
            throw error($"rope_scaling.rope_type '{type}' is not implemented (supported: default, llama3)");
        }
        rs.RejectUnknown();
        return scaling;
    }

    /// <summary>The optional <c>layer_types</c> array (all global when absent); Hugging Face configs use the same
    /// field.</summary>
    internal static AttentionKind[] ParseLayerTypes(StrictJson c, int layers, Func<string, Exception> error)
    {
        var types = new AttentionKind[layers];
        if (c.GetOptional("layer_types", JsonValueKind.Array) is null) return types;
        var arr = c.Array("layer_types", layers);
        if (arr.GetArrayLength() != layers) throw error($"layer_types has {arr.GetArrayLength()} entries for {layers} layers");
        int i = 0;
        foreach (var e in arr.EnumerateArray())
        {
            types[i] = e.ValueKind == JsonValueKind.String ? e.GetString() switch
            {
                "full_attention" => AttentionKind.Global,
                "sliding_attention" => AttentionKind.Local,
                var other
                    => throw error($"layer_types[{i}] = '{other}' is not implemented (full_attention or sliding_attention)"),
            } : throw error($"layer_types[{i}] must be a string");
            i++;
        }
        return types;
    }

    /// <summary>The JSON object <see cref="Parse"/> reads; what writers embed in a .pq file.</summary>
    public byte[] ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("architecture", Architecture);
            w.WriteNumber("vocab_size", VocabSize);
            w.WriteNumber("hidden_size", HiddenSize);
            w.WriteNumber("intermediate_size", IntermediateSize);
            w.WriteNumber("num_hidden_layers", NumLayers);
            w.WriteNumber("num_attention_heads", NumHeads);
            w.WriteNumber("num_key_value_heads", NumKvHeads);
            w.WriteNumber("head_dim", HeadDim);
            w.WriteNumber("max_position_embeddings", MaxPositionEmbeddings);
            w.WriteNumber("rms_norm_eps", RmsNormEps);
            w.WriteNumber("rope_theta", RopeTheta);
            w.WriteString("rope_layout", RopeLayout == RopeLayout.RotateHalf ? "rotate_half" : "interleaved");
            if (RopeScaling is { } s)
            {
                w.WriteStartObject("rope_scaling");
                w.WriteString("rope_type", "llama3");
                w.WriteNumber("factor", s.Factor);
                w.WriteNumber("low_freq_factor", s.LowFreqFactor);
                w.WriteNumber("high_freq_factor", s.HighFreqFactor);
                w.WriteNumber("original_max_position_embeddings", s.OriginalMaxPositionEmbeddings);
                w.WriteEndObject();
            }
            w.WriteBoolean("tie_word_embeddings", TieWordEmbeddings);
            w.WriteNumber("layer_repeat", LayerRepeat);
            w.WriteStartArray("layer_types");
            foreach (var t in LayerTypes) w.WriteStringValue(t == AttentionKind.Global ? "full_attention"
                : "sliding_attention");
            w.WriteEndArray();
            if (SlidingWindow > 0) w.WriteNumber("sliding_window", SlidingWindow);
            w.WriteBoolean("use_qk_norm", UseQkNorm);
            w.WriteStartArray("rope_layers");
            foreach (bool r in RopeLayers) w.WriteNumberValue(r ? 1 : 0);
            w.WriteEndArray();
            if (TemperatureTuning is { } tt)
            {
                w.WriteStartObject("attn_temperature_tuning");
                w.WriteNumber("floor_scale", tt.FloorScale);
                w.WriteNumber("attn_scale", tt.AttnScale);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        return ms.ToArray();
    }

    public override string ToString() => Encoding.UTF8.GetString(ToJson());
}
