using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ParetoQ.Runtime.Model;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

public sealed class ModelConfigTests
{
    [Fact]
    public void Both_architectures_round_trip_through_json()
    {
        foreach (var config in new[] { TestModelGenerator.MobileLlm(layerRepeat: 2),
            TestModelGenerator.MobileLlmPro() })
        {
            using var doc = JsonDocument.Parse(config.ToJson());
            var parsed = ModelConfig.Parse(doc.RootElement, "test");
            Assert.Equal(config.ToString(), parsed.ToString());
            Assert.Equal(config.LayerTypes, parsed.LayerTypes);
            Assert.Equal(config.RopeLayers, parsed.RopeLayers);
            Assert.Equal(config.NumLayers * config.LayerRepeat, parsed.EffectiveLayers);
        }
    }

    public static TheoryData<string, string, string> Edits() => new()
    {
        { "attention_chunk_size", "8192", "unknown field 'attention_chunk_size'" },
        { "architecture", "\"gpt2\"", "unknown architecture 'gpt2'" },
        { "rope_layout", "\"neox\"", "rope_layout 'neox' is not implemented" },
        { "rope_scaling", "{\"rope_type\": \"yarn\"}", "rope_scaling.rope_type 'yarn' is not implemented" },
        { "rope_scaling",
            "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192, \"beta\": 1}", "unknown field 'rope_scaling.beta'" },
        { "num_key_value_heads", "4", "num_attention_heads 5 is not a multiple of num_key_value_heads 4" },
        { "head_dim", "15", "head_dim 15 must be even" },
        { "layer_types", "[\"full_attention\"]", "layer_types has 1 entries for 5 layers" },
        { "layer_types",
            "[\"full_attention\", \"chunked_attention\", \"full_attention\", \"full_attention\", \"full_attention\"]",
            "layer_types[1] = 'chunked_attention' is not implemented" },
        { "sliding_window", "null", "sliding_window is missing" },
        { "rope_layers", "[1, 1, 2, 1, 1]", "field 'rope_layers[2]' = 2 must be an integer in [0, 1]" },
        { "vocab_size", "-3", "field 'vocab_size' = -3 must be an integer" },
        { "hidden_size", "\"80\"", "field 'hidden_size' must be a number, not string" },
        { "rms_norm_eps", "1", "field 'rms_norm_eps' = 1 is outside" },
        { "tie_word_embeddings", null!, "field 'tie_word_embeddings' is missing" },
    };

    [Theory]
    [MemberData(nameof(Edits))]
    public void Unknown_missing_or_unsupported_fields_fail_clearly(string field, string? value, string expected)
    {
        var node = JsonNode.Parse(TestModelGenerator.MobileLlmPro().ToJson())!.AsObject();
        if (value is null) node.Remove(field);
        else node[field] = JsonNode.Parse(value);
        using var doc = JsonDocument.Parse(Encoding.UTF8.GetBytes(node.ToJsonString()));
        var e = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(doc.RootElement, "model.pq"));
        Assert.StartsWith("model.pq: config: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Llama3_rope_scaling_divides_low_frequencies_and_keeps_high_ones()
    {
        var c = TestModelGenerator.MobileLlmPro(); // θ = 500000, head_dim 16, factor 8, low 1, high 4, original 16
        var scaled = LanguageModel.RopeInverseFrequencies(c);
        for (int i = 0; i < scaled.Length; i++)
        {
            double f = Math.Pow(500000, -2.0 * i / 16), wavelen = 2 * Math.PI / f;
            if (wavelen < 16 / 4.0) Assert.Equal((float)f, scaled[i]);          // high frequency: unchanged
            else if (wavelen > 16 / 1.0) Assert.Equal((float)(f / 8), scaled[i]); // low frequency: divided by factor
            else Assert.InRange(scaled[i], (float)(f / 8), (float)f);          // in between: smoothed
        }
    }
}
