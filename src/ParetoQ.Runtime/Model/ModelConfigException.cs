namespace ParetoQ.Runtime.Model;

/// <summary>A model config is missing a field, has a value out of range, or asks for something this build does not
/// implement.</summary>
public sealed class ModelConfigException(string source, string problem)
    : Exception($"{source}: config: {problem}")
{
    public string FilePath { get; } = source;
}
