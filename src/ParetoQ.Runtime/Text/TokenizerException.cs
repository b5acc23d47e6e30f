namespace ParetoQ.Runtime.Text;

/// <summary>A tokenizer file is malformed or asks for something this build does not implement. The message names the
/// source and the problem.</summary>
public sealed class TokenizerException(string source, string problem) : Exception($"{source}: tokenizer: {problem}");
